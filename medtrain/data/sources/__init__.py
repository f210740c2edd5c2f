"""Source readers by name: each yields `Record`s from a data set's own on-disk layout."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.mimic_cxr import iter_mimic_cxr
from medtrain.data.sources.openi import iter_openi

SOURCES: dict[str, Callable[..., Iterator[Record]]] = {
    "mimic-cxr-jpg": iter_mimic_cxr,
    "openi": iter_openi,
}


def get_source(name: str) -> Callable[..., Iterator[Record]]:
    """The reader registered under `name`; DataError listing the valid names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(
            f"unknown data source {name!r}; valid: {', '.join(sorted(SOURCES))}"
        ) from None


__all__ = ["SOURCES", "get_source", "iter_mimic_cxr", "iter_openi"]
