"""R2Gen reader: IU X-ray / MIMIC-CXR as packaged for report generation.

Layout: ROOT/annotation.json and ROOT/images/. annotation.json is
{"train": [...], "val": [...], "test": [...]}; each entry has id, report (already cleaned text,
usually the FINDINGS section), image_path (a list of paths relative to ROOT/images) and split;
MIMIC-CXR entries also carry study_id and subject_id.

One Record per image: id = entry id when the entry has one image, else "<entry id>/<k>" (k =
position in image_path); study_id = entry study_id, else the entry id; subject_id = entry
subject_id or ""; split = the list the entry is in ("val" -> "validate"); labels all None (R2Gen
carries none); view "" (the files do not say which image is lateral).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.data.sources.common import SkipLog, has_escapes, normalize_split, unescape_text

ANNOTATION, IMAGE_DIR = "annotation.json", "images"


def _load(path: Path) -> dict[str, list]:
    if not path.is_file():
        raise DataError(f"R2Gen annotation file not found: {path}")
    try:
        # bytes that are not UTF-8 survive as surrogates: the entry holding them is skipped (or
        # its report decoded by the fallback), not the whole file
        data = json.loads(path.read_bytes().decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(f"{path}: expected an object of lists {{'train': [...], 'val': [...]}}")
    for key in data:
        normalize_split(key, str(path))  # unknown top-level keys are errors
    return data


def iter_r2gen(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """Records in file order (train, val, test as they appear). Entries without an id, an
    image list or report text, with bytes that are not UTF-8 (ids always; reports unless
    `fallback` decodes them), and images that are missing or outside images/, are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"R2Gen root directory not found: {root}")
    path, image_dir = root / ANNOTATION, (root / IMAGE_DIR).resolve()
    data = _load(path)
    keep = None if splits is None else {normalize_split(s, "splits") for s in splits}
    skip = SkipLog(skipped)
    for key, entries in data.items():
        split = normalize_split(key, str(path))
        if keep is not None and split not in keep:
            continue
        for n, entry in enumerate(entries):
            where = f"{path} {key}[{n}]"
            eid = str(entry.get("id", "")).strip() if isinstance(entry, dict) else ""
            if not eid:
                skip(where, f"entry without an id in {where}")
                continue
            if has_escapes(eid):
                skip(where, f"entry id is not valid UTF-8 in {where}")
                continue
            report, images = entry.get("report"), entry.get("image_path")
            if isinstance(report, str):
                try:
                    report = unescape_text(report, fallback, where)
                except DataError as e:
                    skip(eid, str(e))
                    continue
            if not isinstance(report, str) or not report.strip():
                skip(eid, f"empty report in {where}")
                continue
            if not isinstance(images, list) or not images:
                skip(eid, f"no image_path list in {where}")
                continue
            study = str(entry.get("study_id") or eid)
            subject = str(entry.get("subject_id") or "")
            for k, rel in enumerate(images):
                rid = eid if len(images) == 1 else f"{eid}/{k}"
                image = (image_dir / str(rel)).resolve()
                if not image.is_relative_to(image_dir):
                    skip(rid, f"image path {rel!r} leaves {image_dir} ({where})")
                    continue
                if not image.is_file():
                    skip(rid, f"missing image {image}")
                    continue
                yield Record(
                    id=rid,
                    image_path=image,
                    report=report,
                    labels=dict.fromkeys(CHEXPERT_LABELS),
                    split=split,
                    study_id=study,
                    subject_id=subject,
                )
