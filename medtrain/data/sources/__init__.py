"""Source readers by name: each yields `Record`s from a data set's own on-disk layout.

Every reader takes the root (a folder, or for "manifest" also the manifest file) and keyword
arguments `splits` (None: all), `skipped` (a list that receives (id, reason) for every item
it could not use: missing file, unreadable header or XML, report without text or not valid
UTF-8, a malformed CSV/JSON row with its line) and `fallback` (data.text_fallback_encoding:
"" | "cp1252" | "latin-1", how report bytes that are not UTF-8 are decoded, before
de-identification; "" skips such reports). Options
beyond those are reader-specific (READER_OPTIONS): "mimic-cxr-jpg" takes `views` and
`reports_root` (where the separate reports archive lives; None searches the usual places),
"openi" takes `images_root` (where the PNGs are; None searches the usual places), and so do
"rsna-pneumonia" (the DICOM folder), "vqa-rad" and "slake" (the image folder). These three
task sources (REPORTLESS_SOURCES) yield records with report None: RSNA labels {"Pneumonia"}
and boxes, VQA question / answer / answer_type (q_lang "en" only for SLAKE).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.sources.common import check_fallback
from medtrain.data.sources.dicom import iter_dicom
from medtrain.data.sources.manifest import iter_manifest
from medtrain.data.sources.mimic_cxr import iter_mimic_cxr
from medtrain.data.sources.openi import iter_openi
from medtrain.data.sources.r2gen import iter_r2gen
from medtrain.data.sources.rsna import iter_rsna
from medtrain.data.sources.slake import iter_slake
from medtrain.data.sources.vqa_rad import iter_vqa_rad

SOURCES: dict[str, Callable[..., Iterator[Record]]] = {
    "mimic-cxr-jpg": iter_mimic_cxr,
    "openi": iter_openi,
    "r2gen": iter_r2gen,
    "dicom": iter_dicom,
    "manifest": iter_manifest,
    "rsna-pneumonia": iter_rsna,
    "vqa-rad": iter_vqa_rad,
    "slake": iter_slake,
}
# Sources whose records carry no report (downstream-task data: labels, boxes, questions):
# pretraining skips their records; preview shows them from the records directly.
REPORTLESS_SOURCES: tuple[str, ...] = ("rsna-pneumonia", "vqa-rad", "slake")


def get_source(name: str) -> Callable[..., Iterator[Record]]:
    """The reader registered under `name`; DataError listing the valid names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(
            f"unknown data source {name!r}; valid: {', '.join(sorted(SOURCES))}"
        ) from None


# Options of DataConfig that a reader takes (the only place that knows which reader takes what).
READER_OPTIONS: dict[str, tuple[str, ...]] = {
    "mimic-cxr-jpg": ("views", "reports_root"),
    "openi": ("images_root",),
    "rsna-pneumonia": ("images_root",),
    "vqa-rad": ("images_root",),
    "slake": ("images_root",),
}


def open_source(
    name: str,
    root: str | Path,
    *,
    splits: list[str] | None = None,
    skipped: Any = None,
    **options: Any,
) -> Iterator[Record]:
    """Records of source `name` under `root`: the one entry point the pipeline, the shard writer,
    the tokenizer trainer and evaluation use. `options` are DataConfig fields (views,
    reports_root, images_root); each reader receives the ones it takes (READER_OPTIONS), empty
    values meaning the reader's default. `text_fallback_encoding` goes to every reader (as
    `fallback`): the decoding of report bytes that are not valid UTF-8 ("" = skip those)."""
    reader = get_source(name)
    takes = READER_OPTIONS.get(name, ())
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key == "text_fallback_encoding":  # every reader decodes report bytes
            kwargs["fallback"] = check_fallback(value or "")
        elif key == "views":  # a MIMIC filter; () keeps every view; other readers have no views
            if key in takes:
                kwargs[key] = list(value) or None
        elif value and key not in takes:
            raise DataError(f"data.{key} is not used by source {name!r} (set it to '')")
        elif value:
            kwargs[key] = value
    return reader(Path(root), splits=splits, skipped=skipped, **kwargs)


def source_options(data_cfg: Any) -> dict[str, Any]:
    """The reader options held by a DataConfig (views, reports_root, images_root,
    text_fallback_encoding)."""
    return {
        "views": tuple(data_cfg.views),
        "reports_root": data_cfg.reports_root,
        "images_root": data_cfg.images_root,
        "text_fallback_encoding": data_cfg.text_fallback_encoding,
    }


__all__ = [
    "READER_OPTIONS",
    "REPORTLESS_SOURCES",
    "SOURCES",
    "get_source",
    "open_source",
    "source_options",
    "iter_dicom",
    "iter_manifest",
    "iter_mimic_cxr",
    "iter_openi",
    "iter_r2gen",
    "iter_rsna",
    "iter_slake",
    "iter_vqa_rad",
]
