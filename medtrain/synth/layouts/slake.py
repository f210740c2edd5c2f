"""SLAKE: train.json / validate.json / test.json + imgs/xmlab<id>/source.jpg.

Entries as the public files: img_id, img_name, question, answer, q_lang, location, modality
"X-Ray", answer_type, base_type "vqa", content_type, triple, qid. The English questions are
those of synth/vqa.py about the frontal image (the same as the vqa-rad layout's for one
(seed, index)); about half the images also get one Chinese question (q_lang "zh"), which
readers drop. The file is the study's subject split.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image

from medtrain.synth.config import SynthConfig
from medtrain.synth.study import Study, StudyStyle
from medtrain.synth.vqa import study_questions, zh_questions

QIDS_PER_IMAGE = 50
FILES = {"train": "train.json", "validate": "validate.json", "test": "test.json"}


class Writer:
    style = StudyStyle(placeholder="___", sections="mimic", text="findings")
    splits = True
    reports = False

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        self.entries: dict[str, list[dict[str, Any]]] = {s: [] for s in FILES}
        self.n_zh = 0

    def add(self, study: Study) -> dict[str, Any]:
        img_id = study.index + 1
        name = f"xmlab{img_id}/source.jpg"
        (self.out / "imgs" / f"xmlab{img_id}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(study.images[0].draw()).save(self.out / "imgs" / name, quality=92)
        en = study_questions(study.findings, study.rng)
        zh = zh_questions(study.findings, study.rng)
        self.n_zh += len(zh)
        for k, (lang, qa) in enumerate([("en", q) for q in en] + [("zh", q) for q in zh]):
            self.entries[study.ids.split].append({
                "img_id": img_id,
                "img_name": name,
                "question": qa.question,
                "answer": qa.answer,
                "q_lang": lang,
                "location": qa.location,
                "modality": "X-Ray",
                "answer_type": qa.answer_type,
                "base_type": "vqa",
                "content_type": qa.content_type,
                "triple": ["vhead", "_", "_"],
                "qid": study.index * QIDS_PER_IMAGE + k,
            })  # fmt: skip
        return {"report_id": name, "path": None}

    def finish(self) -> dict[str, Any]:
        for split, name in FILES.items():
            text = json.dumps(self.entries[split], indent=1, ensure_ascii=False)
            (self.out / name).write_text(text, encoding="utf-8")
        n = self.cfg.n
        total = sum(map(len, self.entries.values()))
        return {
            "images": n,
            "frontal": n,
            "lateral": 0,
            "questions": total - self.n_zh,
            "questions_zh": self.n_zh,
            "reports": 0,
        }
