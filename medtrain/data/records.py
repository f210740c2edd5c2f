"""What the readers yield (`Record`: one image with its report and/or task fields) and what the
pipeline hands the collator (`Sample`: the same item decoded, as training sees it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keeps this module torch-free for the light paths (readers, CLI help)
    from torch import Tensor


@dataclass(kw_only=True, slots=True)
class Record:
    """One image with what the source says about it.

    id:         stable unique id within the source (e.g. MIMIC dicom_id, Open-I image id)
    image_path: absolute path of the image file
    report:     raw report text as found on disk, or None for samples without a report (VQA,
                classification); it becomes training text only through medtrain/data/text.py
    labels:     finding name -> 1.0 / 0.0 / -1.0 (uncertain) / None (blank, not mentioned)
    split:      "train" | "validate" | "test"
    study_id, subject_id: grouping ids where the source has them ("" otherwise)
    view:       view position (PA, AP, LATERAL, ...) where known
    image_kind: "dicom" for DICOM files (which often have no suffix); "" = decide by suffix
    question, answer: VQA fields (None elsewhere); the question becomes model text only through
                medtrain/data/text.py (`scrub_text`), like every other text
    answer_type: VQA "CLOSED" | "OPEN" (None elsewhere)
    answers:    every human answer where a data set has several (VQA score), () otherwise
    boxes:      (x, y, width, height) boxes in source pixels (e.g. RSNA pneumonia), () if none
    """

    id: str
    image_path: Path
    report: str | None = None
    labels: dict[str, float | None] = field(default_factory=dict)
    split: str = "train"
    study_id: str = ""
    subject_id: str = ""
    view: str = ""
    image_kind: str = ""
    question: str | None = None
    answer: str | None = None
    answer_type: str | None = None
    answers: tuple[str, ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()


@dataclass(kw_only=True, slots=True)
class Sample:
    """One training or evaluation item, built once by the pipeline (records path) or the shard
    reader, and consumed by the collator and the evaluator.

    id:           the record's id
    pixel_values: (1, S, S) float32 model input (before any device-side LCN)
    labels:       (14,) float32 over CHEXPERT_LABELS: 1 / 0 / -1 (uncertain), NaN where blank
    text:         training text (medtrain/data/text.py: de-identified, sectioned), None when the
                  sample has no report
    question, answer: VQA fields (None elsewhere)
    """

    id: str
    pixel_values: Tensor
    labels: Tensor
    text: str | None = None
    question: str | None = None
    answer: str | None = None
