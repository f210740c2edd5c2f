"""MIMIC-CXR-JPG: files/pXX/pSUBJ/sSTUDY/<dicom_id>.jpg, sSTUDY.txt reports, gzip CSVs.

CSVs as released (DESIGN.md section 6): metadata, split, chexpert and negbio (the same labels
in both). Reports are MIMIC free text with `___` masks; injected PHI is the ground truth.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.synth.config import SynthConfig
from medtrain.synth.layouts.common import gzip_csv, label_cells
from medtrain.synth.study import Study, StudyStyle

METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}


def hex_id(rng: np.random.Generator) -> str:
    """dicom_id like the real ones: 5 groups of 8 hex digits."""
    return "-".join(f"{x:08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64).tolist())


class Writer:
    style = StudyStyle(placeholder="___", sections="mimic", text="free", acquisition=True)
    splits = True

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        self.meta = files.enter_context(gzip_csv(out / "mimic-cxr-2.0.0-metadata.csv.gz"))
        self.split = files.enter_context(gzip_csv(out / "mimic-cxr-2.0.0-split.csv.gz"))
        self.chexpert = files.enter_context(gzip_csv(out / "mimic-cxr-2.0.0-chexpert.csv.gz"))
        self.negbio = files.enter_context(gzip_csv(out / "mimic-cxr-2.0.0-negbio.csv.gz"))
        self.meta.writerow(METADATA_COLUMNS)
        self.split.writerow(SPLIT_COLUMNS)
        self.chexpert.writerow(LABEL_COLUMNS)
        self.negbio.writerow(LABEL_COLUMNS)
        self.subjects: set[int] = set()
        self.n_lateral = 0

    def add(self, study: Study) -> dict[str, Any]:
        subject, study_id = study.ids.subject_id, study.ids.study_id
        self.subjects.add(subject)
        folder = self.out / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
        (folder / f"s{study_id}").mkdir(parents=True, exist_ok=True)
        (folder / f"s{study_id}.txt").write_text(study.text, encoding="utf-8")
        cells = label_cells(study.labels)
        self.chexpert.writerow([subject, study_id, *cells])
        self.negbio.writerow([subject, study_id, *cells])
        date, clock = study.acquired
        orient = "Recumbent" if study.view == "AP" else "Erect"
        for image in study.images:
            dicom_id = hex_id(study.rng)
            size = self.cfg.image_size
            path = folder / f"s{study_id}" / f"{dicom_id}.jpg"
            Image.fromarray(image.draw()).save(path, quality=92)
            pos = image.position
            self.meta.writerow(
                [dicom_id, subject, study_id, study.exam, pos, size, size, date, clock,
                 study.exam, _VIEW_MEANING[pos], orient]
            )  # fmt: skip
            self.split.writerow([dicom_id, study_id, subject, study.ids.split])
            self.n_lateral += pos == "LATERAL"
        rel = (folder / f"s{study_id}.txt").relative_to(self.out).as_posix()
        return {"report_id": str(study_id), "path": rel}

    def finish(self) -> dict[str, Any]:
        n = self.cfg.n
        return {
            "images": n + self.n_lateral,
            "frontal": n,
            "lateral": self.n_lateral,
            "studies": n,
            "subjects": len(self.subjects),
            "reports": n,
        }
