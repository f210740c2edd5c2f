"""Final evaluation of a fine-tuned model on one split, shared by the loop and `medtrain eval`.

Writes, under RUN/eval/: <task>-<split>.pred.jsonl and .ref.jsonl (the `medtrain score` line
formats: `medtrain score --task T --pred ... --ref ...` reproduces the metrics),
<task>-<split>.json (metrics, baseline metrics, counts) and <task>-<split>.md (summary table and
the task's figures, e.g. ROC curves for cls).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from medtrain.data.records import Record
from medtrain.finetune.data import eval_loader
from medtrain.finetune.tasks.base import Task


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def summary_markdown(name: str, result: dict[str, Any], figures: list[Path]) -> str:
    metrics, base = result["metrics"], result["baseline"]
    rows = [f"# {name}", "", f"samples: {result['n']}", "", "| metric | model | baseline |"]
    rows.append("|---|---|---|")
    rows += [f"| {k} | {_fmt(v)} | {_fmt(base.get(k, ''))} |" for k, v in metrics.items()]
    rows += ["", *[f"![{p.name}]({p.name})" for p in figures]]
    return "\n".join(rows) + "\n"


def evaluate_split(
    task: Task,
    model: nn.Module,
    train_records: Sequence[Record],
    records: Sequence[Record],
    split: str,
    run_dir: Path,
    *,
    batch_size: int = 32,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Predict `records`, score them and the baseline, write the eval files; returns the
    JSON written to eval/<task>-<split>.json ({"metrics", "baseline", "n", "split", ...})."""
    out = Path(run_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / f"{task.name}-{split}"
    loader = eval_loader(task.dataset(records, split), batch_size, task.collate)
    preds = task.predict(model, loader)
    refs = task.references(records)
    write_jsonl(Path(f"{prefix}.pred.jsonl"), preds)
    write_jsonl(Path(f"{prefix}.ref.jsonl"), refs)
    metrics = task.score(preds, refs)
    base = task.baseline(train_records, refs)
    if isinstance(base, list):  # prediction lines
        base = task.score(base, refs)
    figures = [Path(p) for p in task.plots(preds, refs, prefix)]
    result = {
        "task": task.name,
        "split": split,
        "n": len(refs),
        "metrics": metrics,
        "baseline": base,
        "state": task.state(),
        **(extra or {}),
    }
    Path(f"{prefix}.json").write_text(json.dumps(result, indent=2))
    Path(f"{prefix}.md").write_text(summary_markdown(f"{task.name} on {split}", result, figures))
    return result


def load_finetuned(
    run_dir: str | Path, tag: str | None = None, notes: list[str] | None = None
) -> tuple[Task, nn.Module, Any]:
    """-> (task with its task.json state, model (backbone + head) in fp32 eval mode, config)
    of a fine-tuning run directory; the weights come through the checkpoint gate."""
    from medtrain.config import load_config
    from medtrain.data.tokenizer import load_tokenizer
    from medtrain.finetune.tasks import TASKS
    from medtrain.models.medvlp import MedVLP
    from medtrain.train.checkpoint.load import fp32_state_dict

    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.yaml"))
    weights = fp32_state_dict(run_dir / "checkpoints", tag, notes)  # the gate, first
    tokenizer = load_tokenizer(run_dir / "tokenizer", max_length=cfg.model.text.max_length)
    task = TASKS[cfg.finetune.task](cfg, tokenizer)
    task.load_state(json.loads((run_dir / "task.json").read_text()))
    backbone = MedVLP(cfg.model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model = task.build_model(backbone)
    model.load_state_dict(weights)
    return task, model.eval(), cfg


def evaluate_run(
    run_dir: str | Path,
    split: str,
    device: Any,
    *,
    task_name: str | None = None,
    tag: str | None = None,
    max_samples: int = 0,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """`medtrain eval --task T --run DIR`: evaluate a fine-tuning run on `split` and write its
    eval files as the loop does; returns the eval JSON."""
    from medtrain.finetune.data import label_fraction, load_split

    task, model, cfg = load_finetuned(run_dir, tag, notes)
    if task_name is not None and task_name != task.name:
        from medtrain.config import ConfigError

        raise ConfigError(
            f"{run_dir} is a fine-tuning run of task {task.name!r}, not {task_name!r}"
        )
    ft, data = cfg.finetune, cfg.data
    train, _ = load_split(data, data.train_split, task.keep)
    train = label_fraction(train, ft.label_fraction, ft.fraction_seed)
    records, _ = load_split(data, split, task.keep)
    if max_samples:
        records = records[:max_samples]
    return evaluate_split(
        task,
        model.to(device),
        train,
        records,
        split,
        Path(run_dir),
        batch_size=max(cfg.train.micro_batch_size, 1),
    )
