"""Helpers the source readers share: hashed splits, label cells, pseudonyms, the skip list,
and the decoding of report bytes (UTF-8, an opt-in fallback, never replacement characters)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from typing import Any

from medtrain.data.config import TEXT_FALLBACK_ENCODINGS as FALLBACK_ENCODINGS
from medtrain.data.errors import DataError

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


def hash_split(key: str) -> str:
    """Deterministic split from a grouping key: sha1 -> 80% train, 10% validate, 10% test."""
    x = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32
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
