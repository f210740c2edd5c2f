"""The record every source reader yields: one image with its report and/or task fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
    question, answer: VQA fields (None elsewhere)
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
    boxes: tuple[tuple[float, float, float, float], ...] = ()
