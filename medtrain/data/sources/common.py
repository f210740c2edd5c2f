"""Helpers the source readers share: hashed splits, label cells, pseudonyms, the skip list."""

from __future__ import annotations

import hashlib
import hmac
import os

from medtrain.data.errors import DataError

SPLITS = ("train", "validate", "test")
SPLIT_ALIASES = {"train": "train", "validate": "validate", "val": "validate", "test": "test"}
SPLIT_BOUNDS = ((0.8, "train"), (0.9, "validate"), (1.0, "test"))
LABEL_VALUES = (1.0, 0.0, -1.0)
SALT_ENV = "MEDTRAIN_ID_SALT"


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
