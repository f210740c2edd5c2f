"""Multi-label finding classification (CheXpert labels; RSNA: binary Pneumonia), AUC-ROC.

Label set: finetune.labels, or every label present in the training split with both classes after
the uncertain policy (CheXpert order; others after, sorted); labels with one class only are listed
in `left_out` (e.g. Fracture / Pleural Other on synthetic data, which the phantom never draws).
Targets: 1.0 / 0.0; uncertain (-1.0) per finetune.uncertain: ignore (masked) | ones | zeros;
blank (None, not mentioned) is masked (no loss, omitted from the references); with
finetune.blank = "zeros" blank counts as negative, the
CheXpert-paper convention, which keeps labels a labeler only ever marks positive (No Finding,
Support Devices, ...) in the label set.
Baseline: each label's training prevalence as a constant score, whose AUC is 0.5 by definition
(a constant ranks nothing): the trivial baseline is AUC 0.5 per label and macro.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.finetune.data import TaskDataset
from medtrain.finetune.tasks.base import Task


class ClsTask(Task):
    name = "cls"

    def __init__(self, cfg: Any, tokenizer: Any) -> None:
        super().__init__(cfg, tokenizer)
        self.labels: list[str] = []
        self.left_out: list[str] = []

    # --- targets ------------------------------------------------------------------------------
    def target(self, value: float | None) -> float | None:
        """A record's label value -> 1.0 / 0.0, or None (masked) per the uncertain policy."""
        if value is None:
            return 0.0 if self.cfg.finetune.blank == "zeros" else None
        if value == -1.0:
            return {"ignore": None, "ones": 1.0, "zeros": 0.0}[self.cfg.finetune.uncertain]
        return float(value)

    def targets(self, rec: Record) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (K,), mask (K,)) over self.labels; mask 0 where the target is None."""
        ts = [self.target(rec.labels.get(k)) for k in self.labels]
        values = torch.tensor([0.0 if t is None else t for t in ts])
        return values, torch.tensor([0.0 if t is None else 1.0 for t in ts])

    # --- vocabulary ---------------------------------------------------------------------------
    def fit_vocab(self, train_records: Sequence[Record]) -> None:
        present: dict[str, set[float]] = {}
        for rec in train_records:
            for k, v in rec.labels.items():
                t = self.target(v)
                present.setdefault(k, set())
                if t is not None:
                    present[k].add(t)
        order = [k for k in CHEXPERT_LABELS if k in present]
        order += sorted(k for k in present if k not in CHEXPERT_LABELS)
        if self.cfg.finetune.labels:
            unknown = [k for k in self.cfg.finetune.labels if k not in present]
            if unknown:
                raise ValueError(
                    f"finetune.labels {unknown} do not occur in the training split; "
                    f"labels there: {order}"
                )
            order = list(self.cfg.finetune.labels)
        self.labels = [k for k in order if present[k] == {0.0, 1.0}]
        self.left_out = [k for k in order if k not in self.labels]
        if not self.labels:
            raise ValueError(
                f"no label has both classes in the training split (labels seen: {order})"
            )

    def state(self) -> dict[str, Any]:
        return {"task": self.name, "labels": self.labels, "left_out": self.left_out}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels, self.left_out = list(state["labels"]), list(state.get("left_out", []))

    # --- model --------------------------------------------------------------------------------
    def build_model(self, backbone: Any) -> torch.nn.Module:
        from medtrain.models.downstream.classifier import Classifier

        ft = self.cfg.finetune
        return Classifier(
            backbone, len(self.labels), dropout=ft.head_dropout, frozen=ft.mode == "linear"
        )

    def trainable_groups(self, model: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
        return {
            "backbone": [p for p in model.backbone.parameters() if p.requires_grad],
            "head": list(model.head.parameters()),
        }

    # --- data ---------------------------------------------------------------------------------
    def keep(self, record: Record) -> str | None:
        if self.labels:
            known = [self.target(record.labels.get(k)) for k in self.labels]
            return None if any(t is not None for t in known) else "no usable label"
        return None if any(v is not None for v in record.labels.values()) else "no labels"

    def dataset(self, records: Sequence[Record], split: str) -> TaskDataset:
        def item(rec: Record, pixels: torch.Tensor) -> dict[str, Any]:
            values, mask = self.targets(rec)
            return {"id": rec.id, "pixel_values": pixels, "targets": values, "mask": mask}

        return TaskDataset(records, self.cfg.data, self.cfg.model.vision.img_size, item)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ids": [it["id"] for it in items],
            "pixel_values": torch.stack([it["pixel_values"] for it in items]),  # (B, 1, S, S)
            "targets": torch.stack([it["targets"] for it in items]),  # (B, K)
            "mask": torch.stack([it["mask"] for it in items]),  # (B, K)
        }

    # --- evaluation ---------------------------------------------------------------------------
    def predict(self, model: torch.nn.Module, loader: Any) -> list[dict[str, Any]]:
        lines = []
        for batch, out in self.eval_batches(model, loader):
            probs = torch.sigmoid(out["logits"].float()).cpu()  # (B, K)
            for sid, row in zip(batch["ids"], probs.tolist(), strict=True):
                lines.append({"id": sid, "scores": dict(zip(self.labels, row, strict=True))})
        return lines

    def references(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        refs = []
        for rec in records:
            labels = {}
            for k in self.labels:
                t = self.target(rec.labels.get(k))
                if t is not None:
                    labels[k] = int(t)
            refs.append({"id": rec.id, "labels": labels})
        return refs

    def baseline(self, train_records: Sequence[Record], refs: list[dict[str, Any]]) -> dict:
        prevalence = {}
        for k in self.labels:
            ts = [t for r in train_records if (t := self.target(r.labels.get(k))) is not None]
            prevalence[k] = sum(ts) / len(ts)
        return self.score([{"id": r["id"], "scores": dict(prevalence)} for r in refs], refs)

    def plots(self, preds: list[dict[str, Any]], refs: list[dict[str, Any]], prefix: Any) -> list:
        import numpy as np

        from medtrain.eval.metrics.auc import roc_png

        by_id = {p["id"]: p["scores"] for p in preds}
        y_true, y_score = {}, {}
        for k in self.labels:
            rows = [(r["labels"][k], by_id[r["id"]][k]) for r in refs if k in r["labels"]]
            y_true[k] = np.array([t for t, _ in rows], dtype=float)
            y_score[k] = np.array([s for _, s in rows], dtype=float)
        path = Path(f"{prefix}.roc.png")
        roc_png(y_true, y_score, path)
        return [path]
