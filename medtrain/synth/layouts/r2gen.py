"""R2Gen's IU X-ray packaging: annotation.json + images/<id>/<k>.png.

annotation.json: {"train": [...], "val": [...], "test": [...]}, entries {id, report, image_path,
split}; the report is the FINDINGS text (else IMPRESSION), PHI masked as XXXX.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image

from medtrain.synth.config import SynthConfig
from medtrain.synth.study import Study, StudyStyle

_SPLIT_KEY = {"train": "train", "validate": "val", "test": "test"}


class Writer:
    style = StudyStyle(placeholder="XXXX", sections="openi", text="findings")
    splits = True

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        self.annotation: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        self.subjects: set[int] = set()
        self.n_images = 0

    def add(self, study: Study) -> dict[str, Any]:
        self.subjects.add(study.ids.subject_id)
        rid = f"CXR{study.index + 1}_IM-{(study.index + 1) % 10000:04d}"
        (self.out / "images" / rid).mkdir(parents=True, exist_ok=True)
        paths = []
        for k, image in enumerate(study.images):
            path = self.out / "images" / rid / f"{k}.png"
            Image.fromarray(image.draw()).save(path, compress_level=3)
            paths.append(f"{rid}/{k}.png")
        key = _SPLIT_KEY[study.ids.split]
        self.annotation[key].append(
            {"id": rid, "report": study.text, "image_path": paths, "split": key}
        )
        self.n_images += len(study.images)
        return {"report_id": rid, "path": "annotation.json"}

    def finish(self) -> dict[str, Any]:
        (self.out / "annotation.json").write_text(json.dumps(self.annotation), encoding="utf-8")
        n = self.cfg.n
        return {
            "images": self.n_images,
            "frontal": n,
            "lateral": self.n_images - n,
            "reports": n,
            "subjects": len(self.subjects),
        }
