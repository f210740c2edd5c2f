"""Helpers the source readers share: hashed splits, label cells, pseudonyms, the skip list,
and the decoding of report bytes (UTF-8, an opt-in fallback, never replacement characters)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtrain.data.config import TEXT_FALLBACK_ENCODINGS as FALLBACK_ENCODINGS
from medtrain.data.errors import DataError
from medtrain.data.records import Record

SPLITS = ("train", "validate", "test")
SPLIT_ALIASES = {"train": "train", "validate": "validate", "val": "validate", "test": "test"}
SPLIT_BOUNDS = ((0.8, "train"), (0.9, "validate"), (1.0, "test"))
LABEL_VALUES = (1.0, 0.0, -1.0)
SALT_ENV = "MEDTRAIN_ID_SALT"
# csv's default cell limit (128 KiB) would make one huge report abort a whole table: readers
# accept cells up to this size (a report beyond it is not a report).
MAX_CSV_CELL = 1 << 28
if csv.field_size_limit() < MAX_CSV_CELL:
    csv.field_size_limit(MAX_CSV_CELL)


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) from a key (sha1), for hashed splits."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def hash_split(key: str) -> str:
    """Deterministic split from a grouping key: sha1 -> 80% train, 10% validate, 10% test."""
    x = hash_fraction(key)
    return next(name for bound, name in SPLIT_BOUNDS if x < bound)


def normalize_split(value: str, where: str) -> str:
    """ "train" / "validate" ("val") / "test" -> canonical name; DataError naming `where`."""
    try:
        return SPLIT_ALIASES[value.strip().lower()]
    except KeyError:
        raise DataError(f"{where}: unknown split {value!r}; valid: {', '.join(SPLITS)}") from None


def parse_label(value: object, where: str) -> float | None:
    """Label cell -> 1.0 / 0.0 / -1.0, or None for blank / null; DataError naming `where`."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        x = float("nan")
    if x not in LABEL_VALUES:
        raise DataError(f"{where}: bad label value {value!r}; valid: 1, 0, -1 or blank")
    return x


def pseudonym(value: str, salt: str | None = None) -> str:
    """Keyed hash (HMAC-SHA256, 16 hex digits) of an identifier, e.g. a DICOM PatientID.

    salt: the site secret; None reads $MEDTRAIN_ID_SALT (empty if unset). Without a secret the
    hash of a short MRN can be reversed by trying every MRN, so set one for real exports.
    """
    key = (os.environ.get(SALT_ENV, "") if salt is None else salt).encode("utf-8")
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class SkipLog:
    """Appends (item id, reason) to the caller's `skipped` list when one was given."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[str, str]] | None) -> None:
        self.items = items

    def __call__(self, item: str, reason: str) -> None:
        if self.items is not None:
            self.items.append((item, reason))


# --------------------------------------------------------------------------- report bytes

_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes 0x80-0xff kept by the surrogateescape handler


def check_fallback(fallback: str) -> str:
    if fallback not in FALLBACK_ENCODINGS:
        raise DataError(
            f"data.text_fallback_encoding must be one of {list(FALLBACK_ENCODINGS)}, "
            f"got {fallback!r}"
        )
    return fallback


def decode_report(data: bytes, fallback: str, where: str) -> str:
    """Report bytes -> str: UTF-8, else `fallback` ("" = none). Never replacement characters:
    a U+FFFD in the middle of a name or a date can defeat the de-identification rules, so a
    report that does not decode raises DataError (the reader skips the record with the reason)
    and the opt-in fallback decodes the bytes *before* de-identification (record_text)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if fallback:
            try:
                return data.decode(fallback)
            except UnicodeDecodeError as e2:
                raise DataError(
                    f"report is not valid UTF-8 nor {fallback} at byte {e2.start} ({where})"
                ) from None
        raise DataError(
            f"report is not valid UTF-8 at byte {e.start} ({where}); set "
            "data.text_fallback_encoding (e.g. cp1252) to decode such reports"
        ) from None


def unescape_text(text: str, fallback: str, where: str) -> str:
    """A cell read with errors="surrogateescape" -> its text: unchanged when the bytes were
    UTF-8, else decoded by `decode_report` from the original bytes (DataError without a
    fallback). Lets a CSV/JSON reader quarantine one record instead of the whole file."""
    if not _ESCAPED.search(text):
        return text
    return decode_report(text.encode("utf-8", "surrogateescape"), fallback, where)


def has_escapes(text: str) -> bool:
    """Whether a surrogateescape-read string held bytes that are not UTF-8 (an id, a path)."""
    return _ESCAPED.search(text) is not None


def csv_rows(reader: Any, path: Any, skip: Any) -> Iterator[Any]:
    """The rows of a csv.reader / DictReader; a row the csv module cannot parse is skipped
    (`skip(where, reason)`) and reading goes on with the next line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            where = f"{path} line {reader.line_num}"
            skip(where, f"malformed CSV at {where}: {e}")
            continue
        yield row


# --------------------------------------------------------------------------- VQA JSON files

ANSWER_TYPES = ("CLOSED", "OPEN")


def load_json_list(path: Any, what: str) -> list[Any]:
    """A JSON file holding one list (VQA-RAD, SLAKE); DataError naming the file otherwise.
    Bytes that are not UTF-8 survive as surrogates (the entry holding them is skipped)."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of question entries, got {type(data).__name__}"
        )
    return data


def vqa_entry(entry: Any, required: tuple[str, ...], where: str) -> tuple[dict[str, str], str]:
    """The required fields of one VQA entry as stripped strings (answers given as numbers become
    their text: 2 -> "2", 2.0 -> "2"; answer_type upper-cased), or ("", reason) to skip it:
    not an object, a missing or empty required key, bytes that are not UTF-8, an answer_type
    other than CLOSED / OPEN. Keys beyond `required` are ignored."""
    if not isinstance(entry, dict):
        return {}, f"entry is not an object in {where}"
    missing = [k for k in required if k not in entry or entry[k] is None]
    if missing:
        return {}, f"missing key(s) {missing} in {where}"
    out: dict[str, str] = {}
    for key in required:
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return {}, f"{key} is not text or a number ({type(value).__name__}) in {where}"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        if not text:
            return {}, f"empty {key} in {where}"
        if has_escapes(text):
            return {}, f"{key} is not valid UTF-8 in {where}"
        out[key] = text
    if "answer_type" in out:
        out["answer_type"] = out["answer_type"].upper()
        if out["answer_type"] not in ANSWER_TYPES:
            return (
                {},
                f"unknown answer_type {entry['answer_type']!r} in {where}; valid: CLOSED, OPEN",
            )
    return out, ""


def vqa_record(
    fields: dict[str, str],
    image_name: str,
    *,
    split: str,
    folder: Path,
    where: str,
    skip: SkipLog,
    seen: set[str],
    keep: set[str] | None = None,
) -> Record | None:
    """The Record of one VQA entry (fields from vqa_entry, with "qid"), or None: after a counted
    skip (a qid seen before in the file, an image name leaving `folder` (resolved), a missing
    image file), or quietly when `split` is not in `keep`. Repeats are checked before the split
    filter, so each split read alone keeps the same first occurrence."""
    qid = fields["qid"]
    if qid in seen:
        skip(qid, f"repeated qid {qid} in {where}")
        return None
    seen.add(qid)
    if keep is not None and split not in keep:
        return None
    image = (folder / image_name).resolve()
    if not image.is_relative_to(folder):
        skip(qid, f"image name {image_name!r} leaves {folder} ({where})")
        return None
    if not image.is_file():
        skip(qid, f"missing image {image}")
        return None
    return Record(
        id=qid,
        image_path=image,
        split=split,
        study_id=image_name,
        subject_id=image_name,
        question=fields["question"],
        answer=fields["answer"],
        answer_type=fields["answer_type"],
    )
