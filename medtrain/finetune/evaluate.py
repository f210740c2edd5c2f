"""Final evaluation of a fine-tuned model on one split, shared by the loop and `medtrain eval`.

Writes, under RUN/eval/: <task>-<split>.pred.jsonl and .ref.jsonl (the `medtrain score` line
formats: `medtrain score --task T --pred ... --ref ...` reproduces the metrics),
<task>-<split>.json (metrics, baseline metrics, counts) and <task>-<split>.md (summary table and
the task's figures, e.g. ROC curves for cls). `medtrain eval --max-samples N` writes
<task>-<split>-first<N>.* instead, so a partial evaluation never replaces the full one.

Records whose image cannot be read (data.on_bad_image=skip) are left out of both the
predictions and the references, logged with their ids and counted in the JSON
("skipped_unreadable", "unreadable_ids"). zeroshot_markdown writes the Markdown summary of a
pretraining run's zero-shot evaluation (`medtrain eval --task zeroshot`) with the same tables.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.finetune.data import EvalBatches, TaskDataset
from medtrain.finetune.tasks.base import Task

log = logging.getLogger(__name__)

RECALL_KEY = re.compile(r"(i2t|t2i)(?P<label>_label)?_R@(?P<k>\d+)")  # eval/retrieval.py's keys


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def eval_prefix(run_dir: str | Path, task: str, split: str, first: int = 0) -> Path:
    """RUN/eval/<task>-<split> (no suffix), or <task>-<split>-first<N> for a partial evaluation
    of the first N samples (`--max-samples N`), which must not replace the full one."""
    stem = f"{task}-{split}" + (f"-first{first}" if first else "")
    return Path(run_dir) / "eval" / stem


def metric_table(
    metrics: dict[str, Any], reference: dict[str, Any], cols: tuple[str, str, str]
) -> list[str]:
    """Markdown table rows: one row per metric, `reference` (baseline, chance) beside it."""
    rows = [f"| {' | '.join(cols)} |", "|---|---|---|"]
    return rows + [
        f"| {k} | {_fmt(v)} | {_fmt(reference.get(k, ''))} |" for k, v in metrics.items()
    ]


def summary_markdown(name: str, result: dict[str, Any], figures: list[Path]) -> str:
    rows = [f"# {name}", "", f"samples: {result['n']}"]
    if result.get("skipped_unreadable"):
        rows.append(f"left out (unreadable image): {result['skipped_unreadable']}")
    rows += [
        "",
        *metric_table(result["metrics"], result["baseline"], ("metric", "model", "baseline")),
    ]
    rows += ["", *[f"![{p.name}]({p.name})" for p in figures]]
    return "\n".join(rows) + "\n"


def zeroshot_markdown(name: str, metrics: dict[str, float]) -> str:
    """Summary of eval/runner.evaluate's flat dict: AUC per finding + macro (chance 0.5), and
    retrieval recall@K (exact pair: chance K/n; same finding set: label_R@K/chance)."""
    n = int(metrics.get("n", 0))
    auc = {k.removeprefix("auc/"): v for k, v in metrics.items() if k.startswith("auc/")}
    if "macro" in auc:  # last, below the findings
        auc["macro"] = auc.pop("macro")
    retrieval: dict[str, float] = {}
    chance: dict[str, float] = {}
    for key, value in metrics.items():
        m = RECALL_KEY.fullmatch(key)  # i2t_R@10, t2i_label_R@5, ...
        if m is None:
            continue
        retrieval[key], k = value, int(m["k"])
        exact = min(k / max(n, 1), 1.0)
        chance[key] = metrics.get(f"label_R@{k}/chance", math.nan) if m["label"] else exact
    rows = [f"# {name}", "", f"samples: {n}, skipped: {int(metrics.get('skipped', 0))}", ""]
    rows += ["## Zero-shot classification (AUC-ROC)", ""]
    rows += metric_table(auc, dict.fromkeys(auc, 0.5), ("finding", "auc", "chance"))
    rows += ["", "## Retrieval (recall@K)", ""]
    rows += metric_table(retrieval, chance, ("metric", "model", "chance"))
    return "\n".join(rows) + "\n"


def predict_readable(
    task: Task, model: nn.Module, records: Sequence[Record], split: str, batch_size: int
) -> tuple[list[dict[str, Any]], list[Record], list[tuple[str, str]]]:
    """(prediction lines, the records predicted, skipped (id, reason)): records whose image
    cannot be read are left out, logged with their ids, so predictions and references hold the
    same ids, each once. DataError when no image is readable."""
    dataset = task.dataset(records, split)
    if isinstance(dataset, TaskDataset):
        dataset = dataset.for_evaluation()
    batches = EvalBatches(dataset, batch_size, task.collate)
    preds = task.predict(model, batches)
    skipped = batches.skipped
    if skipped:
        log.warning(
            "evaluation on %r: left out %d of %d records with an unreadable image: %s",
            split,
            len(skipped),
            len(records),
            "; ".join(f"{i} ({why})" for i, why in skipped),
        )
    bad = {i for i, _ in skipped}
    kept = [r for r in records if r.id not in bad]
    if not kept:
        raise DataError(f"evaluation on {split!r}: no record has a readable image")
    return preds, kept, skipped


def evaluate_split(
    task: Task,
    model: nn.Module,
    train_records: Sequence[Record],
    records: Sequence[Record],
    split: str,
    run_dir: Path,
    *,
    batch_size: int = 32,
    first: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Predict `records` (those with a readable image), score them and the baseline, write the
    eval files under eval_prefix(run_dir, task, split, first); returns the JSON written to its
    .json ({"metrics", "baseline", "n", "split", "skipped_unreadable", ...})."""
    prefix = eval_prefix(run_dir, task.name, split, first)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    preds, kept, skipped = predict_readable(task, model, records, split, batch_size)
    refs = task.references(kept)
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
        "skipped_unreadable": len(skipped),
        "unreadable_ids": [i for i, _ in skipped],
        "metrics": metrics,
        "baseline": base,
        "state": task.state(),
        **(extra or {}),
    }
    Path(f"{prefix}.json").write_text(json.dumps(result, indent=2))
    name = f"{task.name} on {split}" + (f" (first {first} samples only)" if first else "")
    Path(f"{prefix}.md").write_text(summary_markdown(name, result, figures))
    return result


def _open_run(
    run_dir: Path, tag: str | None, notes: list[str] | None
) -> tuple[Any, Any, dict[str, Any]]:
    """(config, tokenizer, fp32 weights) of a fine-tuning run; the weights through the
    checkpoint gate, first."""
    from medtrain.config import load_config
    from medtrain.data.tokenizer import load_tokenizer
    from medtrain.train.checkpoint.load import fp32_state_dict

    cfg = load_config(str(run_dir / "config.yaml"))
    weights = fp32_state_dict(run_dir / "checkpoints", tag, notes)  # the gate, first
    tokenizer = load_tokenizer(run_dir / "tokenizer", max_length=cfg.model.text.max_length)
    return cfg, tokenizer, weights


def _model(task: Task, cfg: Any, tokenizer: Any, weights: dict[str, Any]) -> nn.Module:
    """backbone + the task's head with `weights`, fp32, eval mode (the task has its state)."""
    from medtrain.models.medvlp import MedVLP

    backbone = MedVLP(cfg.model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model = task.build_model(backbone)
    model.load_state_dict(weights)
    return model.eval()


def load_finetuned(
    run_dir: str | Path, tag: str | None = None, notes: list[str] | None = None
) -> tuple[Task, nn.Module, Any]:
    """-> (task with its task.json state, model (backbone + head) in fp32 eval mode, config)
    of a fine-tuning run directory; the weights come through the checkpoint gate."""
    from medtrain.finetune.tasks import TASKS

    run_dir = Path(run_dir)
    cfg, tokenizer, weights = _open_run(run_dir, tag, notes)
    task = TASKS[cfg.finetune.task](cfg, tokenizer)
    task.load_state(json.loads((run_dir / "task.json").read_text()))
    return task, _model(task, cfg, tokenizer, weights), cfg


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
    eval files as the loop does (the training subset and baseline read by the loop's
    read_train); returns the eval JSON. max_samples N > 0: only the first N records, written
    to eval/<task>-<split>-first<N>.* (eval_prefix), never over the full evaluation."""
    from medtrain.config import ConfigError
    from medtrain.finetune.data import load_split, read_train
    from medtrain.finetune.tasks import TASKS

    run_dir = Path(run_dir)
    cfg, tokenizer, weights = _open_run(run_dir, tag, notes)
    task = TASKS[cfg.finetune.task](cfg, tokenizer)
    if task_name is not None and task_name != task.name:
        raise ConfigError(
            f"{run_dir} is a fine-tuning run of task {task.name!r}, not {task_name!r}"
        )
    _, train = read_train(cfg, task, json.loads((run_dir / "task.json").read_text()))
    model = _model(task, cfg, tokenizer, weights)
    records, _ = load_split(cfg.data, split, task.keep)
    if max_samples:
        records = records[:max_samples]
    return evaluate_split(
        task,
        model.to(device),
        train,
        records,
        split,
        run_dir,
        batch_size=max(cfg.train.micro_batch_size, 1),
        first=max_samples,
    )
