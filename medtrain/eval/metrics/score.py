"""Score predictions of any system against references with our one set of scorers.

JSONL lines (one object per line, matched by `id`):
    report  pred {id, text}            ref {id, text[, labels: {label: 1|0|-1|null}]}
    cls     pred {id, scores: {l: p}}  ref {id, labels: {l: 0|1 (|-1|null: ignored)}}
    vqa     pred {id, answer}          ref {id, question, answer | answers: [...], answer_type}
report: bleu1..4, rougeL, cider (captions.py) and clinical efficacy (labeler.py): `ce/*` compares
our labeler's findings in the generated text with its findings in the reference text (the first,
where a reference has several); per-finding `ce/<finding>/f1` only for findings positive on
either side (the others are named in `ScoreResult.notes`). References carrying `labels` add
`ce_ref_labels/precision|recall|f1`: the labeler on the generated text vs those labels, over the
references that carry them. cls: auc.py per label, macro, bootstrap CIs;
-1 (uncertain) and blank targets are left out of that label's AUC. vqa: vqa.py.
Problems in the input raise DataError naming the file and line or the offending ids.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from medtrain.data.errors import DataError

TASKS = ("report", "cls", "vqa")
_PRED_KEYS = {"report": ("text",), "cls": ("scores",), "vqa": ("answer",)}
_REF_KEYS = {"report": ("text",), "cls": ("labels",), "vqa": ()}
_KNOWN = {
    "report": {"id", "text", "labels"},
    "cls": {"id", "scores", "labels"},
    "vqa": {"id", "question", "answer", "answers", "answer_type"},
}
_LABEL_VALUES = (1.0, 0.0, -1.0, None)


@dataclass
class ScoreResult:
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)  # skipped labels, CE reference source, ...


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSONL file (blank lines skipped); errors name file:line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            if "id" not in obj:
                raise DataError(f"{path}:{lineno}: line has no 'id'")
            rows.append(obj)
    return rows


def _by_id(rows: list[dict], what: str, required: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for i, row in enumerate(rows):
        if "id" not in row:
            raise DataError(f"{what} row {i} has no 'id'")
        key = str(row["id"])
        if key in out:
            raise DataError(f"{what}: duplicate id {key!r}")
        for k in required:
            if row.get(k) is None:
                raise DataError(f"{what}: id {key!r} has no {k!r}")
        out[key] = row
    return out


def _match(preds: dict[str, dict], refs: dict[str, dict]) -> None:
    missing = [k for k in refs if k not in preds]
    extra = [k for k in preds if k not in refs]
    if missing or extra:
        raise DataError(
            f"prediction ids do not match reference ids: {len(missing)} references without a "
            f"prediction (first {missing[:5]}), {len(extra)} predictions without a reference "
            f"(first {extra[:5]})"
        )


def _label_value(v, where: str) -> float | None:
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{where}: label value {v!r} not in {{1, 0, -1, blank}}") from None
    if math.isnan(f):
        return None
    if f not in _LABEL_VALUES:
        raise DataError(f"{where}: label value {v!r} not in {{1, 0, -1, blank}}")
    return f


def _labels(row: dict, where: str) -> dict[str, float | None]:
    labels = row["labels"]
    if not isinstance(labels, dict):
        raise DataError(f"{where}: 'labels' must be an object {{label: value}}")
    return {str(k): _label_value(v, f"{where} label {k!r}") for k, v in labels.items()}


def _unknown_keys_note(rows: dict[str, dict], task: str, what: str) -> list[str]:
    extra: dict[str, int] = {}
    for row in rows.values():
        for k in row:
            if k not in _KNOWN[task]:
                extra[k] = extra.get(k, 0) + 1
    if not extra:
        return []
    return [f"{what}: ignored keys {', '.join(f'{k} ({n} lines)' for k, n in extra.items())}"]


def _ref_dataset_labels(refs: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """The validated `labels` of the references that carry them (DataError on bad values or
    labels outside CHEXPERT_LABELS)."""
    from medtrain.data.labels import CHEXPERT_LABELS

    out: dict[str, dict[str, float | None]] = {}
    for k, r in refs.items():
        if r.get("labels") is not None:
            got = _labels(r, f"reference {k!r}")
            unknown = sorted(set(got) - set(CHEXPERT_LABELS))
            if unknown:
                raise DataError(f"reference {k!r}: labels {unknown} not in CHEXPERT_LABELS")
            out[k] = got
    return out


def _report(preds: dict[str, dict], refs: dict[str, dict]) -> ScoreResult:
    from medtrain.eval.metrics.captions import caption_metrics
    from medtrain.eval.metrics.labeler import ce_scores, label_report

    texts = {k: str(p["text"]) for k, p in preds.items()}
    ref_texts = {}
    for k, r in refs.items():
        t = r["text"]
        ref_texts[k] = [str(x) for x in t] if isinstance(t, list) else [str(t)]
    metrics = caption_metrics({k: texts[k] for k in refs}, ref_texts)
    dataset = _ref_dataset_labels(refs)
    pred_labels = {k: label_report(texts[k]) for k in refs}
    read_refs = {k: label_report(ref_texts[k][0]) for k in refs}  # labeler vs labeler
    ce, left_out = ce_scores(pred_labels, read_refs)
    metrics.update(ce)
    notes = ["CE: our labeler on the generated and on the reference text (first reference)"]
    if left_out:
        notes.append(
            "CE per-finding F1 left out (no positive in predictions or references): "
            + ", ".join(left_out)
        )
    if dataset:
        extra, _ = ce_scores(pred_labels, dataset, prefix="ce_ref_labels", per_finding=False)
        metrics.update(extra)
        notes.append(
            "ce_ref_labels: our labeler on the generated text vs the reference labels "
            f"({len(dataset)}/{len(refs)} references carry labels)"
        )
    return ScoreResult(metrics, notes)


def _cls(preds: dict[str, dict], refs: dict[str, dict], bootstrap: int, seed: int) -> ScoreResult:
    import numpy as np

    from medtrain.eval.metrics.auc import auc_report

    ids = list(refs)
    targets = {k: _labels(refs[k], f"reference {k!r}") for k in ids}
    names: list[str] = []
    for t in targets.values():
        names.extend(n for n in t if n not in names)
    y_true = {n: np.full(len(ids), np.nan) for n in names}  # (N,) per label, NaN = ignored
    y_score = {n: np.zeros(len(ids)) for n in names}
    for i, k in enumerate(ids):
        scores = preds[k]["scores"]
        if not isinstance(scores, dict):
            raise DataError(f"prediction {k!r}: 'scores' must be an object {{label: p}}")
        for n, v in targets[k].items():
            if v in (0.0, 1.0):
                if n not in scores:
                    raise DataError(f"prediction {k!r} has no score for label {n!r}")
                try:
                    y_score[n][i] = float(scores[n])
                except (TypeError, ValueError):
                    raise DataError(f"prediction {k!r}: score {scores[n]!r} of {n!r}") from None
                y_true[n][i] = v
    metrics, skipped = auc_report(y_true, y_score, bootstrap=bootstrap, seed=seed)
    notes = []
    if skipped:
        notes.append(f"no AUC (one class only among kept targets): {', '.join(skipped)}")
    return ScoreResult(metrics, notes)


def _vqa(preds: dict[str, dict], refs: dict[str, dict]) -> ScoreResult:
    from medtrain.eval.metrics.vqa import vqa_metrics

    for k, r in refs.items():
        if r.get("answer") is None and not r.get("answers"):
            raise DataError(f"reference {k!r} has neither 'answer' nor 'answers'")
    try:
        metrics = vqa_metrics({k: str(p["answer"]) for k, p in preds.items()}, refs)
    except ValueError as e:
        raise DataError(str(e)) from None
    return ScoreResult(metrics)


def score_report(
    task: str, preds: list[dict], refs: list[dict], *, bootstrap: int = 1000, seed: int = 0
) -> ScoreResult:
    """Metrics and notes of `task` (see the module docstring)."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    p = _by_id(preds, "predictions", _PRED_KEYS[task])
    r = _by_id(refs, "references", _REF_KEYS[task])
    if not r:
        raise DataError("no references to score")
    _match(p, r)
    notes = _unknown_keys_note(p, task, "predictions") + _unknown_keys_note(r, task, "references")
    if task == "report":
        out = _report(p, r)
    elif task == "cls":
        out = _cls(p, r, bootstrap, seed)
    else:
        out = _vqa(p, r)
    out.notes = notes + out.notes
    return out


def score_task(
    task: str, preds: list[dict], refs: list[dict], *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, float]:
    """{metric: value} of `task` in report|cls|vqa (score_report adds explanatory notes)."""
    return score_report(task, preds, refs, bootstrap=bootstrap, seed=seed).metrics
