"""The record every source reader yields: one image paired with its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(kw_only=True, slots=True)
class Record:
    """One image-report pair.

    id:         stable unique id within the source (e.g. MIMIC dicom_id, Open-I image id)
    image_path: absolute path of the image file
    report:     raw report text as found on disk (sectioning/cleaning happens later)
    labels:     finding name -> 1.0 / 0.0 / -1.0 (uncertain) / None (blank, not mentioned)
    split:      "train" | "validate" | "test"
    study_id, subject_id: grouping ids where the source has them ("" otherwise)
    view:       view position (PA, AP, LATERAL, ...) where known
    image_kind: "dicom" for DICOM files (which often have no suffix); "" = decide by suffix
    """

    id: str
    image_path: Path
    report: str
    labels: dict[str, float | None] = field(default_factory=dict)
    split: str = "train"
    study_id: str = ""
    subject_id: str = ""
    view: str = ""
    image_kind: str = ""
