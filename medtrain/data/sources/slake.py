"""SLAKE reader: train.json, validate.json, test.json (lists of questions) + imgs/.

Entries: img_id, img_name ("xmlab<id>/source.jpg", relative to imgs/), question, answer,
q_lang, location, modality, answer_type, base_type, content_type, triple, qid. Only English
questions are kept: q_lang other than "en" (SLAKE ships Chinese too) is filtered, not an error,
and not counted as skipped; one INFO line per file says how many were filtered. One Record per
question: id = str(qid), split from the file (validate.json -> validate), study_id and
subject_id = img_name, labels {}, report None.
Skipped with the reason: an entry that is not an object or misses a required key (qid,
img_name, question, answer, answer_type, q_lang), a repeated qid, an unknown answer_type, an
image outside imgs/ or missing. A split file that is missing or not a JSON list is a DataError
naming it; `images_root` names the image folder instead of imgs/.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.common import (
    SPLITS,
    SkipLog,
    load_json_list,
    normalize_split,
    vqa_entry,
    vqa_record,
)

FILES = {"train": "train.json", "validate": "validate.json", "test": "test.json"}
IMAGE_DIR = "imgs"
REQUIRED = ("qid", "img_name", "question", "answer", "answer_type", "q_lang")

log = logging.getLogger(__name__)


def iter_slake(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    images_root: str | Path | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """Records of train.json, validate.json, test.json in that order (those of `splits`)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"SLAKE root directory not found: {root}")
    folder = Path(images_root) if images_root else root / IMAGE_DIR
    if not folder.is_dir():
        raise DataError(f"SLAKE image folder not found: {folder}")
    folder = folder.resolve()
    wanted = SPLITS if splits is None else [normalize_split(s, "splits") for s in splits]
    skip = SkipLog(skipped)
    seen: set[str] = set()
    for split in SPLITS:
        if split not in wanted:
            continue
        path = root / FILES[split]
        other_lang = 0
        for n, entry in enumerate(load_json_list(path, "SLAKE")):
            where = f"{path.name}[{n}]"
            fields, reason = vqa_entry(entry, REQUIRED, where)
            if reason:
                skip(where, reason)
                continue
            if fields["q_lang"].lower() != "en":
                other_lang += 1  # the Chinese half of SLAKE: filtered, not an error
                continue
            record = vqa_record(
                fields,
                fields["img_name"],
                split=split,
                folder=folder,
                where=where,
                skip=skip,
                seen=seen,
            )
            if record is not None:
                yield record
        log.info("SLAKE %s: %d non-English questions filtered", path.name, other_lang)
