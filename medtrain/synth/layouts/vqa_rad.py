"""VQA-RAD: `VQA_RAD Dataset Public.json` (one list of questions) + `VQA_RAD Image Folder/`.

Entries as the public file: qid, image_name (synpicNNNNN.jpg), image_case_url, image_organ
"CHEST", answer, answer_type, question_type, question, question_rephrase, phrase_type,
evaluation "given", qid_linked_id; the questions of synth/vqa.py about the frontal image. Test
studies' questions are "test_freeform" / "test_para", the others "freeform" / "para"; the
reader splits the rest by image (a hash), and image names are chosen so that its validate images
are this study's validate subjects. Like the public file: COUNT answers are JSON numbers and some
answer_type values carry a trailing space (every 17th question), which the reader normalizes.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image

from medtrain.data.sources.vqa_rad import IMAGE_DIR, JSON_NAME, image_split
from medtrain.synth.config import SynthConfig
from medtrain.synth.layouts.common import matching_name
from medtrain.synth.study import Study, StudyStyle
from medtrain.synth.vqa import study_questions

QIDS_PER_IMAGE = 50  # qid = index * QIDS_PER_IMAGE + k (a function of the study alone)


def image_name(index: int, split: str) -> str:
    """synpicNNNNNNNN.jpg of study `index` whose reader-side image split is `split`."""
    if split == "test":
        return f"synpic{100000 + index * 1000}.jpg"
    return matching_name(lambda k: f"synpic{100000 + index * 1000 + k}.jpg", image_split, split)


class Writer:
    style = StudyStyle(placeholder="___", sections="mimic", text="findings")
    splits = True
    reports = False

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg, self.out = cfg, out
        (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        self.entries: list[dict[str, Any]] = []

    def add(self, study: Study) -> dict[str, Any]:
        name = image_name(study.index, study.ids.split)
        Image.fromarray(study.images[0].draw()).save(self.out / IMAGE_DIR / name, quality=92)
        test = study.ids.split == "test"
        last_free = None
        for k, qa in enumerate(study_questions(study.findings, study.rng)):
            qid = study.index * QIDS_PER_IMAGE + k
            phrase = ("test_" if test else "") + ("para" if qa.paraphrase else "freeform")
            answer: str | int = int(qa.answer) if qa.question_type == "COUNT" else qa.answer
            answer_type = qa.answer_type + (" " if qid % 17 == 5 else "")
            self.entries.append({
                "qid": qid,
                "image_name": name,
                "image_case_url": f"https://medpix.example/case/{name[:-4]}",
                "image_organ": "CHEST",
                "answer": answer,
                "answer_type": answer_type,
                "question_type": qa.question_type,
                "question": qa.question,
                "question_rephrase": "NULL",
                "phrase_type": phrase,
                "evaluation": "given",
                "qid_linked_id": f"{last_free if qa.paraphrase else qid}",
            })  # fmt: skip
            if not qa.paraphrase:
                last_free = qid
        return {"report_id": name, "path": None}

    def finish(self) -> dict[str, Any]:
        (self.out / JSON_NAME).write_text(json.dumps(self.entries, indent=1), encoding="utf-8")
        n = self.cfg.n
        closed = sum(e["answer_type"].strip() == "CLOSED" for e in self.entries)
        return {
            "images": n,
            "frontal": n,
            "lateral": 0,
            "questions": len(self.entries),
            "closed": closed,
            "open": len(self.entries) - closed,
            "reports": 0,
        }
