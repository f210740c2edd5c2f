"""Manifest: images/*.png + manifest.jsonl or manifest.csv (cfg.manifest_format).

One row per image (id, image, report, split, study_id, subject_id, view, then the 14 CheXpert
labels: a "labels" object in JSON lines, one column each in CSV); split by subject.
"""

from __future__ import annotations

import csv
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.synth.config import SynthConfig
from medtrain.synth.layouts.common import label_cells
from medtrain.synth.study import Study, StudyStyle

MANIFEST_COLUMNS = ("id", "image", "report", "split", "study_id", "subject_id", "view")


class Writer:
    style = StudyStyle(placeholder="___", sections="mimic", text="free")
    splits = True

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        self.name = f"manifest.{cfg.manifest_format}"
        self.rows: list[dict[str, Any]] = []
        self.subjects: set[int] = set()
        (out / "images").mkdir(parents=True, exist_ok=True)

    def add(self, study: Study) -> dict[str, Any]:
        ids = study.ids
        self.subjects.add(ids.subject_id)
        for k, image in enumerate(study.images):
            rel = f"images/{study.index:06d}_{k}.png"
            Image.fromarray(image.draw()).save(self.out / rel, compress_level=3)
            row = {"id": f"{ids.study_id}_{k}", "image": rel, "report": study.text}
            row |= {"split": ids.split, "study_id": str(ids.study_id)}
            row |= {"subject_id": str(ids.subject_id), "view": image.position}
            self.rows.append(row | {"labels": study.labels})
        return {"report_id": str(ids.study_id), "path": self.name}

    def finish(self) -> dict[str, Any]:
        if self.cfg.manifest_format == "jsonl":
            with open(self.out / self.name, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row) + "\n" for row in self.rows)
        else:
            with open(self.out / self.name, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow([*MANIFEST_COLUMNS, *CHEXPERT_LABELS])
                for row in self.rows:
                    writer.writerow([row[c] for c in MANIFEST_COLUMNS] + label_cells(row["labels"]))
        n = self.cfg.n
        return {
            "images": len(self.rows),
            "frontal": n,
            "lateral": len(self.rows) - n,
            "reports": n,
            "subjects": len(self.subjects),
            "manifest": self.name,
        }
