"""RSNA Pneumonia Detection Challenge: stage_2_train_labels.csv, stage_2_detailed_class_info.csv,
stage_2_train_images/<patientId>.dcm.

One patient per study (patientId: a UUID-like string from (seed, index), chosen so that the
reader's hashed split equals the study's subject split). Target follows Finding.pneumonia of a
drawn consolidation (hedged ones are drawn fainter and still count: Target 1): one row per
drawn pneumonia opacity box (x, y, width, height in pixels of the written image: where the
phantom drew it, after its rotation/shift), or one Target 0 row with blank box cells. Class:
"Lung Opacity" (Target 1), "Normal" (no finding drawn) or "No Lung Opacity / Not Normal".
DICOMs in the encodings of synth/dicom.py, in turn; no PHI (the challenge data is anonymized).
"""

from __future__ import annotations

import csv
import hashlib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from medtrain.data.sources.common import hash_split
from medtrain.synth.config import SynthConfig
from medtrain.synth.dicom import VARIANTS, uid, write_dicom
from medtrain.synth.layouts.common import matching_name
from medtrain.synth.phantom import PixelBox
from medtrain.synth.study import Study, StudyStyle

LABELS_CSV = "stage_2_train_labels.csv"
CLASS_CSV = "stage_2_detailed_class_info.csv"
IMAGE_DIR = "stage_2_train_images"


def patient_id(seed: int, index: int, split: str) -> str:
    """UUID-like id of study `index` whose hash_split is `split`."""

    def make(k: int) -> str:
        h = hashlib.sha256(f"rsna/{seed}/{index}/{k}".encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    return matching_name(make, hash_split, split)


def pneumonia_boxes(study: Study, boxes: list[PixelBox]) -> list[PixelBox]:
    """The boxes of the drawn pneumonia consolidations."""
    return [b for b in boxes if study.findings[b.index].pneumonia]


class Writer:
    style = StudyStyle(placeholder="___", sections="mimic", text="findings")
    splits = True
    reports = False

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        lf = open(out / LABELS_CSV, "w", encoding="utf-8", newline="")  # noqa: SIM115
        cf = open(out / CLASS_CSV, "w", encoding="utf-8", newline="")  # noqa: SIM115
        files.enter_context(lf), files.enter_context(cf)  # closed by generate() after finish()
        self.labels = csv.writer(lf, lineterminator="\n")
        self.classes = csv.writer(cf, lineterminator="\n")
        self.labels.writerow(["patientId", "x", "y", "width", "height", "Target"])
        self.classes.writerow(["patientId", "class"])
        self.n_positive = self.n_boxes = 0

    def add(self, study: Study) -> dict[str, Any]:
        pid = patient_id(self.cfg.seed, study.index, study.ids.split)
        frontal = study.images[0]
        drawn: list[PixelBox] = []
        pixels = frontal.draw(drawn)
        boxes = pneumonia_boxes(study, drawn)
        if boxes:
            kind = "Lung Opacity"
            for b in boxes:
                self.labels.writerow(
                    [pid, f"{b.x:.1f}", f"{b.y:.1f}", f"{b.width:.1f}", f"{b.height:.1f}", 1]
                )
                self.classes.writerow([pid, kind])
            self.n_positive += 1
            self.n_boxes += len(boxes)
        else:
            kind = "Normal" if not study.findings else "No Lung Opacity / Not Normal"
            self.labels.writerow([pid, "", "", "", "", 0])
            self.classes.writerow([pid, kind])
        rng = study.rng
        header = {
            "PatientName": pid,
            "PatientID": pid,
            "PatientSex": "MF"[int(rng.integers(2))],
            "PatientAge": f"{int(rng.integers(18, 90)):03d}Y",
            "BodyPartExamined": "CHEST",
            "ViewPosition": study.view,
            "StudyInstanceUID": uid(self.cfg.seed, "rsna-study", study.index),
            "SeriesInstanceUID": uid(self.cfg.seed, "rsna-series", study.index),
            "SeriesDescription": f"view: {study.view}",
            "ConversionType": "WSD",
        }
        variant = VARIANTS[study.index % len(VARIANTS)]
        modality = "CR" if variant.startswith("m1") else "DX"
        write_dicom(
            self.out / IMAGE_DIR / f"{pid}.dcm", pixels, variant=variant, modality=modality,
            header=header, sop_uid=uid(self.cfg.seed, "rsna-sop", study.index),
        )  # fmt: skip
        return {"report_id": pid, "path": None}

    def finish(self) -> dict[str, Any]:
        n = self.cfg.n
        return {
            "images": n,
            "frontal": n,
            "lateral": 0,
            "patients": n,
            "positive": self.n_positive,
            "boxes": self.n_boxes,
            "reports": 0,
        }
