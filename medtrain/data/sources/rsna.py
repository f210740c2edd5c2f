"""RSNA Pneumonia Detection Challenge reader: stage_2_train_labels.csv + one DICOM per patient.

Layout: `stage_2_train_labels.csv` (patientId, x, y, width, height, Target; one row per opacity
box for a positive patient, one row with blank box cells for a negative one) and
`stage_2_train_images/<patientId>.dcm` (or `images_root`). stage_2_detailed_class_info.csv is
not needed (its class follows Target) and is not read.

One Record per patient in first-row order: id = study_id = subject_id = patientId, labels
{"Pneumonia": 1.0 if any row has Target 1 else 0.0}, boxes (x, y, width, height) of its Target-1
rows, image_kind "dicom", report None, split by a stable hash of patientId (80/10/10: the
challenge ships no split). A row that cannot be used skips its patient, with the file, line and
reason (never trained on with labels the table did not give): a malformed row (wrong number of
cells, a quoting error), Target not 0 or 1, a Target-1 row without a numeric box of positive
size, a Target-0 row with a box. A patient without its DICOM is skipped as a missing image. A
file without the columns is a DataError naming it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.common import SkipLog, csv_rows, has_escapes, hash_split, normalize_split

LABELS_CSV = "stage_2_train_labels.csv"
IMAGE_DIR = "stage_2_train_images"
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
Box = tuple[float, float, float, float]


def _row(cells: dict[str, str | None]) -> tuple[int, Box | None, str]:
    """(Target, box or None, reason): reason non-empty when the row is unusable."""
    target_text = (cells["Target"] or "").strip()
    try:
        target = int(float(target_text))
        if float(target_text) != target:
            raise ValueError
    except ValueError:
        return -1, None, f"Target {target_text!r} is not 0 or 1"
    if target not in (0, 1):
        return -1, None, f"Target {target_text!r} is not 0 or 1"
    raw = [(cells[k] or "").strip() for k in ("x", "y", "width", "height")]
    if target == 0:
        if any(raw):
            return -1, None, f"Target 0 row with a box {raw}"
        return 0, None, ""
    try:
        box = tuple(float(v) for v in raw)
    except ValueError:
        return -1, None, f"Target 1 row without a numeric box {raw}"
    if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
        return -1, None, f"Target 1 row with a bad box {raw}"
    return 1, box, ""  # type: ignore[return-value]


def iter_rsna(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    images_root: str | Path | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """Records (see the module docstring); `fallback` is unused (no reports)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"RSNA root directory not found: {root}")
    path = root / LABELS_CSV
    if not path.is_file():
        raise DataError(f"RSNA label file not found: {path}")
    images = Path(images_root) if images_root else root / IMAGE_DIR
    if not images.is_dir():
        raise DataError(f"RSNA image folder not found: {images}")
    keep = None if splits is None else {normalize_split(s, "splits") for s in splits}
    skip = SkipLog(skipped)
    targets: dict[str, list[int]] = {}
    boxes: dict[str, list[Box]] = {}
    bad: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing columns {missing}")
        for row in csv_rows(reader, path, skip):
            line = f"{path.name} line {reader.line_num}"
            pid = (row.get("patientId") or "").strip()
            if not pid or has_escapes(pid):
                skip(line, f"row without a usable patientId at {line}")
                continue
            if None in row or any(row[c] is None for c in COLUMNS):
                n = len(row) - (None in row) + len(row.get(None) or [])
                bad.setdefault(pid, f"malformed row ({n} cells, expected {len(COLUMNS)}) at {line}")
                targets.setdefault(pid, [])
                continue
            target, box, reason = _row(row)
            targets.setdefault(pid, [])
            if reason:
                bad.setdefault(pid, f"{reason} at {line}")
                continue
            targets[pid].append(target)
            if box is not None:
                boxes.setdefault(pid, []).append(box)
    for pid, values in targets.items():
        if pid in bad:
            skip(pid, bad[pid])
            continue
        if len(set(values)) > 1:
            skip(pid, f"patient {pid} has both Target 0 and Target 1 rows in {path.name}")
            continue
        split = hash_split(pid)
        if keep is not None and split not in keep:
            continue
        image = images / f"{pid}.dcm"
        if not image.is_file():
            skip(pid, f"missing image {image}")
            continue
        yield Record(
            id=pid,
            image_path=image.resolve(),
            labels={"Pneumonia": float(values[0])},
            split=split,
            study_id=pid,
            subject_id=pid,
            image_kind="dicom",
            boxes=tuple(boxes.get(pid, ())),
        )
