"""Source readers by name: each yields `Record`s from a data set's own on-disk layout.

Every reader takes the root (a folder, or for "manifest" also the manifest file) and keyword
arguments `splits` (None: all) and `skipped` (a list that receives (id, reason) for every item
it could not use: missing file, unreadable header or XML, report without text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.dicom import iter_dicom
from medtrain.data.sources.manifest import iter_manifest
from medtrain.data.sources.mimic_cxr import iter_mimic_cxr
from medtrain.data.sources.openi import iter_openi
from medtrain.data.sources.r2gen import iter_r2gen

SOURCES: dict[str, Callable[..., Iterator[Record]]] = {
    "mimic-cxr-jpg": iter_mimic_cxr,
    "openi": iter_openi,
    "r2gen": iter_r2gen,
    "dicom": iter_dicom,
    "manifest": iter_manifest,
}


def get_source(name: str) -> Callable[..., Iterator[Record]]:
    """The reader registered under `name`; DataError listing the valid names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(
            f"unknown data source {name!r}; valid: {', '.join(sorted(SOURCES))}"
        ) from None


__all__ = [
    "SOURCES",
    "get_source",
    "iter_dicom",
    "iter_manifest",
    "iter_mimic_cxr",
    "iter_openi",
    "iter_r2gen",
]
