"""The downstream tasks by name (finetune.task); `report` is imported only when asked for."""

from __future__ import annotations

from typing import Any

from medtrain.finetune.config import TASKS as TASK_NAMES


def get_task(name: str) -> type:
    """Task class of `name`; ValueError listing the tasks otherwise."""
    if name == "cls":
        from medtrain.finetune.tasks.cls import ClsTask

        return ClsTask
    if name == "vqa":
        from medtrain.finetune.tasks.vqa import VqaTask

        return VqaTask
    if name == "report":
        from medtrain.finetune.tasks.report import ReportTask

        return ReportTask
    raise ValueError(f"unknown task {name!r}; tasks: {list(TASK_NAMES)}")


class _Tasks(dict):
    """TASKS["cls"] -> ClsTask, importing each task module on first use."""

    def __missing__(self, name: str) -> Any:
        cls = get_task(name)
        self[name] = cls
        return cls

    def __contains__(self, name: object) -> bool:
        return name in TASK_NAMES

    def keys(self):  # type: ignore[override]
        return list(TASK_NAMES)


TASKS: dict[str, type] = _Tasks()
