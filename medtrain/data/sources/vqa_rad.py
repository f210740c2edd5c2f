"""VQA-RAD reader: one JSON list of questions, images in a folder beside it.

Layout: `VQA_RAD Dataset Public.json` (root may be the folder holding it or the file itself)
and the images under `VQA_RAD Image Folder/<image_name>` (the public release), or `images/`
beside the JSON, or beside the JSON itself; `images_root` names the folder instead.

One Record per question: id = str(qid), question, answer (numbers become their text),
answer_type CLOSED / OPEN (case and spaces normalized), labels {}, report None, study_id and
subject_id = image_name (label-fraction sampling and the split go by image). Split: phrase_type
starting with "test" -> test; otherwise validate for a stable 10% of the images (a hash of
image_name), else train. Skipped with the reason: an entry that is not an object or misses a
required key (qid, image_name, question, answer, answer_type, phrase_type), a repeated qid, an
unknown answer_type, an image outside the folder or missing. Other keys are ignored. A file that
is not a JSON list is a DataError naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.common import (
    SkipLog,
    hash_fraction,
    load_json_list,
    normalize_split,
    vqa_entry,
    vqa_record,
)

JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
REQUIRED = ("qid", "image_name", "question", "answer", "answer_type", "phrase_type")
VALIDATE_FRACTION = 0.1


def image_split(image_name: str) -> str:
    """Split of a non-test image: validate for a stable VALIDATE_FRACTION of the names."""
    return "validate" if hash_fraction(image_name) < VALIDATE_FRACTION else "train"


def find_json(root: Path) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"VQA-RAD root not found: {root}")
    path = root / JSON_NAME
    if not path.is_file():
        raise DataError(f"VQA-RAD file not found: {path}")
    return path


def image_folder(json_path: Path, images_root: str | Path | None = None) -> Path:
    """`images_root`, else the first of `VQA_RAD Image Folder/`, `images/` beside the JSON,
    else the JSON's own folder."""
    if images_root:
        folder = Path(images_root)
        if not folder.is_dir():
            raise DataError(f"data.images_root {folder} is not a folder")
        return folder.resolve()
    for name in (IMAGE_DIR, "images"):
        if (json_path.parent / name).is_dir():
            return (json_path.parent / name).resolve()
    return json_path.parent.resolve()


def iter_vqa_rad(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    images_root: str | Path | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """Records in file order (see the module docstring); `fallback` is unused (no reports)."""
    path = find_json(Path(root))
    entries = load_json_list(path, "VQA-RAD")
    folder = image_folder(path, images_root)
    keep = None if splits is None else {normalize_split(s, "splits") for s in splits}
    skip = SkipLog(skipped)
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        where = f"{path.name}[{n}]"
        fields, reason = vqa_entry(entry, REQUIRED, where)
        if reason:
            skip(where, reason)
            continue
        name = fields["image_name"]
        split = "test" if fields["phrase_type"].lower().startswith("test") else image_split(name)
        record = vqa_record(
            fields, name, split=split, folder=folder, where=where, skip=skip, seen=seen, keep=keep
        )
        if record is not None:
            yield record
