"""Report generation: image -> de-identified report text (BLEU / ROUGE-L / CIDEr-D / CE).

Targets: `record_text(rec, cfg.data.deid)`, the one report -> text path (de-identified,
FINDINGS + IMPRESSION), tokenized as `[CLS] text [SEP]` to finetune.max_target_length.
Model: models/downstream/report_gen.ReportGenerator (the backbone's vision tower + a BERT decoder
with cross-attention, started from the text tower). Predictions come from transformers'
`generate` with finetune.num_beams / length_penalty / no_repeat_ngram_size / max_new_tokens.
Clinical efficacy (`ce/*`) compares our labeler's findings in the generated and in the reference
text; references also carry the record's CheXpert labels where it has any, scored as the extra
`ce_ref_labels/*` (the labeler on the generated text vs the dataset labels).
Baseline: every prediction is the most common training report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.data.text import record_text
from medtrain.finetune.data import TaskDataset
from medtrain.finetune.tasks.base import Task


def most_common(texts: Sequence[str]) -> str:
    """The most frequent text (ties: the alphabetically first); "" for none."""
    counts = Counter(texts)
    if not counts:
        return ""
    return min(counts, key=lambda t: (-counts[t], t))


class ReportTask(Task):
    name = "report"

    def __init__(self, cfg: Any, tokenizer: Any) -> None:
        super().__init__(cfg, tokenizer)
        self.most_common_report = ""
        self._texts: dict[str, str] = {}  # record id -> training text (de-identified once)

    # --- text ---------------------------------------------------------------------------------
    def text(self, rec: Record) -> str:
        """The record's report through the one text path (DataError when it has none)."""
        if rec.id not in self._texts:
            self._texts[rec.id] = record_text(rec, self.cfg.data.deid)
        return self._texts[rec.id]

    def special(self) -> dict[str, int]:
        tok = self.tokenizer
        return {"pad": tok.pad_token_id, "bos": tok.cls_token_id, "eos": tok.sep_token_id}

    # --- vocabulary ---------------------------------------------------------------------------
    def fit_vocab(self, train_records: Sequence[Record]) -> None:
        self.most_common_report = most_common(
            [self.text(r) for r in train_records if self.keep(r) is None]
        )

    def state(self) -> dict[str, Any]:
        return {"task": self.name, "most_common_report": self.most_common_report}

    def load_state(self, state: dict[str, Any]) -> None:
        self.most_common_report = str(state.get("most_common_report", ""))

    # --- model --------------------------------------------------------------------------------
    def build_model(self, backbone: Any) -> torch.nn.Module:
        from medtrain.models.downstream.report_gen import ReportGenerator

        ft = self.cfg.finetune
        return ReportGenerator(
            backbone,
            num_layers=ft.decoder_layers,
            max_positions=max(ft.max_target_length, ft.max_new_tokens + 1),
            special=self.special(),
            frozen_vision=ft.mode == "linear",
        )

    def trainable_groups(self, model: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
        """backbone: the vision tower (empty for mode=linear); head: image projection + decoder
        (trained in both modes)."""
        return {
            "backbone": [p for p in model.vision.parameters() if p.requires_grad],
            "head": list(model.image_proj.parameters()) + list(model.decoder.parameters()),
        }

    # --- data ---------------------------------------------------------------------------------
    def keep(self, record: Record) -> str | None:
        if record.report is None:
            return "no report"
        try:
            self.text(record)
        except DataError as e:
            return f"unusable report ({e})"
        return None

    def dataset(self, records: Sequence[Record], split: str) -> TaskDataset:
        def item(rec: Record, pixels: torch.Tensor) -> dict[str, Any]:
            return {"id": rec.id, "pixel_values": pixels, "text": self.text(rec)}

        return TaskDataset(records, self.cfg.data, self.cfg.model.vision.img_size, item)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        enc = self.tokenizer(
            [it["text"] for it in items],
            max_length=self.cfg.finetune.max_target_length,
            truncation=True,
            padding="longest",
            return_tensors="pt",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]  # (B, L): [CLS] … [SEP] [PAD]…
        return {
            "ids": [it["id"] for it in items],
            "pixel_values": torch.stack([it["pixel_values"] for it in items]),  # (B, 1, S, S)
            "input_ids": ids,
            "attention_mask": mask,
            "labels": ids.masked_fill(mask == 0, -100),  # (B, L)
        }

    # --- evaluation ---------------------------------------------------------------------------
    def generate_texts(self, model: torch.nn.Module, pixel_values: torch.Tensor) -> list[str]:
        from medtrain.models.downstream.report_gen import decode_reports

        ft = self.cfg.finetune
        ids = model.generate(
            pixel_values,
            max_new_tokens=ft.max_new_tokens,
            num_beams=ft.num_beams,
            length_penalty=ft.length_penalty,
            no_repeat_ngram_size=ft.no_repeat_ngram_size,
        )
        return decode_reports(self.tokenizer, ids)

    def predict(self, model: torch.nn.Module, loader: Any) -> list[dict[str, Any]]:
        from medtrain.finetune.data import model_device_dtype, to_device

        model = getattr(model, "module", model)  # a DeepSpeed engine's model
        device, dtype = model_device_dtype(model)
        was_training = model.training
        model.eval()
        lines = []
        try:
            with torch.no_grad():
                for batch in loader:
                    pixels = {"pixel_values": batch["pixel_values"]}
                    pixels = to_device(pixels, device, dtype, self.cfg.data.image)["pixel_values"]
                    texts = self.generate_texts(model, pixels)
                    lines += [
                        {"id": i, "text": t} for i, t in zip(batch["ids"], texts, strict=True)
                    ]
        finally:
            model.train(was_training)
        return lines

    def references(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        refs = []
        for rec in records:
            line: dict[str, Any] = {"id": rec.id, "text": self.text(rec)}  # ce/*: labeler reads it
            labels = {k: rec.labels[k] for k in CHEXPERT_LABELS if k in rec.labels}  # ce_ref_labels
            if labels:
                line["labels"] = labels
            refs.append(line)
        return refs

    def baseline(self, train_records: Sequence[Record], refs: list[dict[str, Any]]) -> dict:
        usable = [self.text(r) for r in train_records if self.keep(r) is None]
        text = most_common(usable) or self.most_common_report
        return self.score([{"id": r["id"], "text": text} for r in refs], refs)
