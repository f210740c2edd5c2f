"""Manifest reader: a JSONL or CSV file listing image, report text and optional fields.

ROOT is the manifest file itself (*.jsonl or *.csv) or a folder holding exactly one of
manifest.jsonl / manifest.csv. Relative image paths resolve against the manifest's folder.

- JSONL, one object per line: {"image": "imgs/a.png", "report": "...", and optionally "id",
  "split", "study_id", "subject_id", "view", "labels": {"Edema": 1, "Cardiomegaly": null, ...}}.
- CSV with a header: columns image and report, optionally id, split, study_id, subject_id,
  view; every other column is a label (cells 1 / 0 / -1, as 1.0 etc., or blank).

Keys: id = the `id` column where the row has one, else `<manifest stem>-<line>` (the line the
row starts on, as in error messages: stable for a file). Several rows may name one image (VQA
questions, report revisions): each is its own record. A repeated explicit id is skipped (the
first row keeps it). Defaults: study_id = the explicit id, else the image path as written, so
rows sharing an image without ids share a study and a split; split = hash of subject_id, else
study_id (80/10/10, one group one split). Labels: 1.0 / 0.0 / -1.0 / None for blank or null,
any label names. image_kind "dicom" for *.dcm / *.dicom images.
Missing CSV columns raise DataError naming the file; every per-row fault is skipped with its
reason naming file and line: unknown JSONL keys, bad split or label values, a CSV row with too
few or too many cells, an unparsable line, a missing image, an empty report, a report that is
not valid UTF-8 (unless data.text_fallback_encoding decodes it), a repeated id.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.common import (
    SkipLog,
    csv_rows,
    has_escapes,
    hash_split,
    normalize_split,
    parse_label,
    unescape_text,
)

NAMES = ("manifest.jsonl", "manifest.csv")
FIELDS = ("id", "image", "report", "split", "study_id", "subject_id", "view")
JSON_KEYS = frozenset((*FIELDS, "labels"))
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


def find_manifest(root: Path) -> Path:
    """The manifest file for ROOT (a file, or a folder with exactly one manifest.*)."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() not in (".jsonl", ".csv"):
            raise DataError(f"manifest must be .jsonl or .csv: {root}")
        return root
    if not root.is_dir():
        raise DataError(f"manifest not found: {root}")
    found = [root / n for n in NAMES if (root / n).is_file()]
    if len(found) != 1:
        what = "both" if found else "neither"
        raise DataError(f"{root}: {what} of {', '.join(NAMES)} found; pass the manifest file")
    return found[0]


def _labels(raw: dict[str, Any], where: str) -> dict[str, float | None]:
    return {str(k): parse_label(v, where) for k, v in raw.items()}


def _jsonl_rows(path: Path, skip: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    # bytes that are not UTF-8 survive as surrogates: only the row holding them is affected
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for n, line in enumerate(f, start=1):
            where = f"{path} line {n}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                skip(where, f"not valid JSON ({where}): {e}")
                continue
            if not isinstance(row, dict):
                skip(where, f"not a JSON object ({where})")
                continue
            unknown = set(row) - JSON_KEYS
            if unknown:
                skip(where, f"unknown keys {sorted(unknown)} ({where}); valid: {sorted(JSON_KEYS)}")
                continue
            labels = row.get("labels") or {}
            if not isinstance(labels, dict):
                skip(where, f"labels must be an object of name -> 1 / 0 / -1 / null ({where})")
                continue
            try:
                row["labels"] = _labels(labels, where)
            except DataError as e:
                skip(where, str(e))
                continue
            yield n, row


def _breaks(cells: dict[Any, Any]) -> int:
    """Line breaks inside a CSV row's cells, as the file iterator counts lines (\n, \r, \r\n)."""
    text = "".join(v if isinstance(v, str) else "".join(v) for v in cells.values() if v is not None)
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _csv_rows(path: Path, skip: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or ())
        missing = {"image", "report"} - set(columns)
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}; header is {columns}")
        label_cols = [c for c in columns if c not in FIELDS]
        for cells in csv_rows(reader, path, skip):
            n = reader.line_num - _breaks(cells)  # the row's first line (quoted cells may span)
            where = f"{path} line {n}"
            if None in cells or None in cells.values():  # DictReader: extra / missing cells
                have = (
                    len(columns)
                    + len(cells.get(None) or ())
                    - sum(  # type: ignore[call-overload]
                        v is None for v in cells.values()
                    )
                )
                skip(where, f"malformed row: {have} cells, header has {len(columns)} ({where})")
                continue
            row: dict[str, Any] = {c: cells[c] for c in FIELDS if c in cells}
            try:
                row["labels"] = _labels({c: cells[c] for c in label_cols}, where)
            except DataError as e:
                skip(where, str(e))
                continue
            yield n, row


def iter_manifest(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """One Record per manifest row, in file order (keys and defaults: module docstring).
    `fallback` (data.text_fallback_encoding) decodes reports that are not valid UTF-8."""
    path = find_manifest(Path(root))
    base = path.parent.resolve()
    keep = None if splits is None else {normalize_split(s, "splits") for s in splits}
    skip = SkipLog(skipped)
    seen: set[bytes] = set()  # 8-byte digests of the ids so far (~50 bytes a row, not the ids)
    rows = _jsonl_rows(path, skip) if path.suffix.lower() == ".jsonl" else _csv_rows(path, skip)
    for line, row in rows:
        where = f"{path} line {line}"
        image_rel = str(row.get("image") or "").strip()
        explicit = str(row.get("id") or "").strip()
        if has_escapes(explicit):
            skip(where, f"id is not valid UTF-8 ({where})")
            continue
        rid = explicit or f"{path.stem}-{line}"
        digest = hashlib.blake2b(rid.encode("utf-8"), digest_size=8).digest()
        if digest in seen:
            skip(rid, f"repeated id {rid!r}: an earlier row has it ({where})")
            continue
        seen.add(digest)
        if not image_rel:
            skip(rid, f"no image path ({where})")
            continue
        report = row.get("report")
        if isinstance(report, str):
            try:
                report = unescape_text(report, fallback, where)
            except DataError as e:
                skip(rid, str(e))
                continue
        if not isinstance(report, str) or not report.strip():
            skip(rid, f"empty report ({where})")
            continue
        image = (base / image_rel).resolve()  # an absolute image path stays as it is
        if not image.is_file():
            skip(rid, f"missing image {image} ({where})")
            continue
        study = str(row.get("study_id") or "").strip() or explicit or image_rel
        subject = str(row.get("subject_id") or "").strip()
        raw_split = str(row.get("split") or "").strip()
        try:
            split = normalize_split(raw_split, where) if raw_split else hash_split(subject or study)
        except DataError as e:
            skip(rid, str(e))
            continue
        if keep is not None and split not in keep:
            continue
        yield Record(
            id=rid,
            image_path=image,
            report=report,
            labels=row["labels"],
            split=split,
            study_id=study,
            subject_id=subject,
            view=str(row.get("view") or "").strip().upper(),
            image_kind="dicom" if image.suffix.lower() in DICOM_SUFFIXES else "",
        )
