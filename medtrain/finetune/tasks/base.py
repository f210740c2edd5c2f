"""The interface every downstream task implements; the loop (finetune/loop.py) knows only this.

A task turns Records of a source (data/sources) into model inputs, adds its head to the
pretrained backbone, says what its loss is, predicts on a split, and writes prediction and
reference lines in the `medtrain score` formats, which medtrain.eval.metrics.score scores.

Lifecycle, in one process per rank:
    task = TASKS[name](run_cfg, tokenizer)
    task.fit_vocab(train_records)           # label set / answer set from the training split
                                            # (or task.load_state(json) when resuming / evaluating)
    model = task.build_model(backbone)      # nn.Module: forward(batch) -> {"loss": (), ...}
    ds = task.dataset(records, split)       # map-style Dataset of per-sample dicts
    batch = task.collate(items)             # dict of tensors (+ "ids": list[str])
    preds = task.predict(model, loader)     # list of prediction lines
    refs = task.references(records)         # list of reference lines
    metrics = task.score(preds, refs)       # medtrain.eval.metrics.score.score_task(...)
    task.state()                            # JSON-able: what load_state needs (in task.json)

Text: every report or question reaches the tokenizer only through medtrain/data/text.py
(`record_text` for reports, `scrub_text` for questions), never directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from torch import Tensor, nn
    from torch.utils.data import DataLoader, Dataset

    from medtrain.config import RunConfig
    from medtrain.data.records import Record
    from medtrain.models.medvlp import MedVLP


class Task:
    """Base class of the cls / vqa / report tasks (see the module docstring)."""

    name: str = ""

    def __init__(self, cfg: RunConfig, tokenizer: Any) -> None:
        self.cfg, self.tokenizer = cfg, tokenizer

    # --- vocabulary of the task (label set, answer set), from the training split -------------
    def fit_vocab(self, train_records: Sequence[Record]) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- model --------------------------------------------------------------------------------
    def build_model(self, backbone: MedVLP) -> nn.Module:
        """backbone + head; forward(batch) -> dict with "loss" (a scalar Tensor) and outputs."""
        raise NotImplementedError

    def trainable_groups(self, model: nn.Module) -> dict[str, list[Tensor]]:
        """{"backbone": [...], "head": [...]} (linear probe: backbone empty and frozen)."""
        raise NotImplementedError

    # --- data ---------------------------------------------------------------------------------
    def keep(self, record: Record) -> str | None:
        """None when the task can use `record`, else the reason it is skipped (counted)."""
        raise NotImplementedError

    def dataset(self, records: Sequence[Record], split: str) -> Dataset:
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    # --- evaluation ---------------------------------------------------------------------------
    def predict(self, model: nn.Module, loader: DataLoader | Iterable) -> list[dict[str, Any]]:
        raise NotImplementedError

    def references(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def score(self, preds: list[dict[str, Any]], refs: list[dict[str, Any]]) -> dict[str, float]:
        from medtrain.eval.metrics.score import score_task

        return score_task(self.name, preds, refs, bootstrap=self.cfg.finetune.bootstrap)

    def baseline(self, train_records: Sequence[Record], refs: list[dict[str, Any]]) -> dict:
        """Metrics of the trivial baseline (prevalence / majority answer / most common report)
        from the training split: its predictions for `refs`' ids scored with self.score. (The
        loop also accepts a list of prediction lines, which it scores itself.)"""
        raise NotImplementedError

    # --- optional ----------------------------------------------------------------------------
    def plots(self, preds: list[dict[str, Any]], refs: list[dict[str, Any]], prefix: Any) -> list:
        """Write figures of an evaluation beside `prefix` (a Path without suffix, e.g.
        eval/cls-test); returns the paths written (the Markdown summary links them)."""
        return []

    def eval_batches(self, model: nn.Module, loader: DataLoader | Iterable) -> Iterable:
        """(batch on the model's device, model outputs) per batch, in eval mode, no grad: the
        common part of every task's predict()."""
        import torch

        from medtrain.finetune.data import model_device_dtype, to_device

        device, dtype = model_device_dtype(model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in loader:
                    batch = to_device(batch, device, dtype, self.cfg.data.image)
                    yield batch, model(batch)
        finally:
            model.train(was_training)
