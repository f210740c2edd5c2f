"""Hospital export: export/S#####/IM####.dcm (+ CT localizers to skip), reports.csv/report.txt.

The convention of data/sources/dicom.py. Images in the encodings of synth/dicom.py (VARIANTS
in turn); every 5th study (i % 5 == 2) also holds a CT file that is not a radiograph; reports
go to reports.csv keyed by AccessionNumber, or to the study folder's report.txt for every 4th
study (i % 4 == 3). Hospital reports carry real-looking PHI instead of a data set's masks.
Also writes dicom_truth.jsonl (per file: path, truth PNG, variant, modality, view, sop_uid) and
pixel_truth/S#####/IM####.png, the phantoms a correct decoder recovers exactly.
"""

from __future__ import annotations

import csv
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medtrain.data.sources.common import pseudonym
from medtrain.synth.config import SynthConfig
from medtrain.synth.dicom import VARIANTS, uid, write_dicom
from medtrain.synth.study import Study, StudyStyle

_INSTITUTIONS = ("Mercy General Hospital", "Lakeside Community Hospital", "Riverside Health Center")
_PATIENT_NAMES = ("DOE^JOHN", "ROE^MARY^A", "NGUYEN^WEI", "OKAFOR^CHINEDU", "GARCIA^LUCIA")


def dicom_header(cfg: SynthConfig, study: Study) -> dict[str, str]:
    """Patient/study attributes with the identifiers a real export carries; draws from
    study.rng, the patient's identity from [seed, 3, subject] (same patient, same identity)."""
    rng, i, subject = study.rng, study.index, study.ids.subject_id
    prng = np.random.default_rng([cfg.seed, 3, subject])
    birth = f"{1930 + int(prng.integers(70))}{int(prng.integers(1, 13)):02d}"
    birth += f"{int(prng.integers(1, 29)):02d}"
    date = f"{2015 + int(rng.integers(10))}{int(rng.integers(1, 13)):02d}"
    date += f"{int(rng.integers(1, 29)):02d}"
    return {
        "PatientName": _PATIENT_NAMES[int(prng.integers(len(_PATIENT_NAMES)))],
        "PatientID": f"{subject}",
        "PatientBirthDate": birth,
        "PatientSex": "MF"[int(prng.integers(2))],
        "StudyInstanceUID": uid(cfg.seed, "study", i),
        "AccessionNumber": f"RA{int(rng.integers(1000, 10000))}{i:07d}",
        "StudyDate": date,
        "StudyTime": f"{int(rng.integers(24)):02d}{int(rng.integers(60)):02d}00",
        "InstitutionName": _INSTITUTIONS[int(rng.integers(len(_INSTITUTIONS)))],
        "ReferringPhysicianName": "SMITH^ANNA",
        "BodyPartExamined": "CHEST",
        "StudyDescription": study.exam,
    }


class Writer:
    style = StudyStyle(placeholder=None, sections="mimic", text="free")
    splits = True

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        truth = open(out / "dicom_truth.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.truth = files.enter_context(truth)  # closed by generate() after finish()
        self.reports: list[tuple[str, str]] = []
        self.subjects: set[int] = set()
        self.n_images = self.n_other = 0

    def add(self, study: Study) -> dict[str, Any]:
        cfg, out, i = self.cfg, self.out, study.index
        self.subjects.add(study.ids.subject_id)
        header = dicom_header(cfg, study)
        folder = f"export/S{i:05d}"
        for k, image in enumerate(study.images):
            pixels = image.draw()
            variant = VARIANTS[self.n_images % len(VARIANTS)]
            modality = "CR" if variant.startswith("m1") else "DX"
            rel = f"{folder}/IM{k + 1:04d}.dcm"
            pos = image.position
            extra = {
                "ViewPosition": "LL" if pos == "LATERAL" else pos,
                "SeriesInstanceUID": uid(cfg.seed, "series", i, k),
                "InstanceNumber": "1",
            }
            sop = uid(cfg.seed, "sop", i, k)
            write_dicom(
                out / rel, pixels, variant=variant, modality=modality,
                header=header | extra, sop_uid=sop,
            )  # fmt: skip
            truth = f"pixel_truth/S{i:05d}/IM{k + 1:04d}.png"
            (out / truth).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(out / truth, compress_level=3)
            line = {"path": rel, "truth": truth, "variant": variant, "modality": modality}
            self.truth.write(json.dumps(line | {"view": pos, "sop_uid": sop}) + "\n")
            self.n_images += 1
        if i % 5 == 2:  # a CT localizer in the same study folder: not a radiograph
            ct = np.zeros((16, 16), np.uint8)
            extra = {"SeriesInstanceUID": uid(cfg.seed, "series", i, "ct")}
            write_dicom(
                out / folder / "CT0001.dcm", ct, variant="m2-u12-full", modality="CT",
                header=header | extra, sop_uid=uid(cfg.seed, "sop", i, "ct"),
            )  # fmt: skip
            self.n_other += 1
        if i % 4 == 3:
            path = f"{folder}/report.txt"
            (out / path).write_text(study.text, encoding="utf-8")
        else:
            path = "reports.csv"
            self.reports.append((header["AccessionNumber"], study.text))
        # report_id: the reader's study_id with MEDTRAIN_ID_SALT unset
        report_id = pseudonym(header["StudyInstanceUID"])
        return {"report_id": report_id, "path": path, "accession": header["AccessionNumber"]}

    def finish(self) -> dict[str, Any]:
        with open(self.out / "reports.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["AccessionNumber", "report"])
            writer.writerows(self.reports)
        n = self.cfg.n
        return {
            "images": self.n_images,
            "frontal": n,
            "lateral": self.n_images - n,
            "other_modality": self.n_other,
            "studies": n,
            "subjects": len(self.subjects),
            "reports": n,
        }
