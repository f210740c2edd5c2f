"""Medical VQA as answer classification over the training split's answer set.

Answers are normalized with the VQA convention (medtrain.eval.metrics.vqa.normalize_answer); an
answer seen fewer than finetune.min_answer_count times in training is not a class (no loss for
its questions), and at test time an answer outside the set counts as wrong. Questions reach the
tokenizer only through medtrain.data.text.scrub_text (the one text path).
Baseline: the most common training answer of each answer_type (CLOSED / OPEN).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from medtrain.data.records import Record
from medtrain.data.text import scrub_text
from medtrain.finetune.data import TaskDataset
from medtrain.finetune.tasks.base import Task

IGNORE = -100


def normalize(answer: str) -> str:
    from medtrain.eval.metrics.vqa import normalize_answer

    return normalize_answer(answer)


class VqaTask(Task):
    name = "vqa"

    def __init__(self, cfg: Any, tokenizer: Any) -> None:
        super().__init__(cfg, tokenizer)
        self.answers: list[str] = []
        self.index: dict[str, int] = {}

    def question(self, rec: Record) -> str:
        return scrub_text(rec.question or "", self.cfg.data.deid)

    # --- vocabulary ---------------------------------------------------------------------------
    def fit_vocab(self, train_records: Sequence[Record]) -> None:
        counts = Counter(normalize(r.answer or "") for r in train_records)
        counts.pop("", None)
        kept = [(a, n) for a, n in counts.items() if n >= self.cfg.finetune.min_answer_count]
        if not kept:
            raise ValueError(
                f"no training answer occurs >= finetune.min_answer_count="
                f"{self.cfg.finetune.min_answer_count} times"
            )
        self.load_state({"answers": [a for a, _ in sorted(kept, key=lambda an: (-an[1], an[0]))]})

    def state(self) -> dict[str, Any]:
        return {"task": self.name, "answers": self.answers}

    def load_state(self, state: dict[str, Any]) -> None:
        self.answers = list(state["answers"])
        self.index = {a: i for i, a in enumerate(self.answers)}

    # --- model --------------------------------------------------------------------------------
    def build_model(self, backbone: Any) -> torch.nn.Module:
        from medtrain.models.downstream.vqa import VqaModel

        ft = self.cfg.finetune
        return VqaModel(
            backbone, len(self.answers), dropout=ft.head_dropout, frozen=ft.mode == "linear"
        )

    def trainable_groups(self, model: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
        return {
            "backbone": [p for p in model.backbone.parameters() if p.requires_grad],
            "head": list(model.head.parameters()),
        }

    # --- data ---------------------------------------------------------------------------------
    def keep(self, record: Record) -> str | None:
        if not (record.question or "").strip():
            return "no question"
        if not (record.answer or "").strip():
            return "no answer"
        return None

    def dataset(self, records: Sequence[Record], split: str) -> TaskDataset:
        def item(rec: Record, pixels: torch.Tensor) -> dict[str, Any]:
            return {
                "id": rec.id,
                "pixel_values": pixels,
                "question": self.question(rec),
                "answer": self.index.get(normalize(rec.answer or ""), IGNORE),
            }

        return TaskDataset(records, self.cfg.data, self.cfg.model.vision.img_size, item)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        enc = self.tokenizer(
            [it["question"] for it in items],
            padding="longest",
            truncation=True,
            max_length=self.cfg.model.text.max_length,
            return_tensors="pt",
        )
        return {
            "ids": [it["id"] for it in items],
            "pixel_values": torch.stack([it["pixel_values"] for it in items]),  # (B, 1, S, S)
            "input_ids": enc["input_ids"],  # (B, L)
            "attention_mask": enc["attention_mask"],  # (B, L)
            "answer": torch.tensor([it["answer"] for it in items]),  # (B,)
        }

    # --- evaluation ---------------------------------------------------------------------------
    def predict(self, model: torch.nn.Module, loader: Any) -> list[dict[str, Any]]:
        lines = []
        for batch, out in self.eval_batches(model, loader):
            best = out["logits"].argmax(dim=-1).tolist()  # (B,)
            lines += [
                {"id": sid, "answer": self.answers[i]}
                for sid, i in zip(batch["ids"], best, strict=True)
            ]
        return lines

    def references(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        refs = []
        for rec in records:
            ref = {
                "id": rec.id,
                "question": self.question(rec),
                "answer": rec.answer,
                "answer_type": (rec.answer_type or "OPEN").upper(),
            }
            if rec.answers:
                ref["answers"] = list(rec.answers)
            refs.append(ref)
        return refs

    def baseline(self, train_records: Sequence[Record], refs: list[dict[str, Any]]) -> dict:
        by_type: dict[str, Counter] = {}
        for r in train_records:
            by_type.setdefault((r.answer_type or "OPEN").upper(), Counter())[
                normalize(r.answer or "")
            ] += 1
        overall = Counter(normalize(r.answer or "") for r in train_records).most_common(1)[0][0]
        majority = {t: c.most_common(1)[0][0] for t, c in by_type.items()}
        preds = [{"id": r["id"], "answer": majority.get(r["answer_type"], overall)} for r in refs]
        return self.score(preds, refs)
