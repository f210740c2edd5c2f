"""MIMIC-CXR-JPG reader: streams the gzip metadata CSV and pairs images with study reports.

Layout (DESIGN.md section 6): `files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg`, reports at
`files/pXX/pSUBJECT/sSTUDY.txt`, CSVs `mimic-cxr-2.0.0-{metadata,split,chexpert,negbio}.csv.gz`
in the root. The split table (per dicom) and label table (per study) are held in dicts; the
metadata is streamed row by row.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
LABEL_CSVS = {
    "chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz",
    "negbio": "mimic-cxr-2.0.0-negbio.csv.gz",
}


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def _label(cell: str, path: Path) -> float | None:
    """'' -> None (not mentioned); '1.0' / '0.0' / '-1.0' -> float."""
    if cell.strip() == "":
        return None
    try:
        return float(cell)
    except ValueError as e:
        raise DataError(f"{path}: bad label value {cell!r}") from e


def _load_labels(path: Path) -> dict[str, dict[str, float | None]]:
    """study_id -> {label: value} for the 14 CheXpert labels."""
    table = {}
    for row in _rows(path):
        missing = [n for n in CHEXPERT_LABELS if n not in row]
        if missing:
            raise DataError(f"{path}: missing label columns {missing}")
        table[row["study_id"]] = {n: _label(row[n], path) for n in CHEXPERT_LABELS}
    return table


def iter_mimic_cxr(
    root: Path,
    *,
    views: Sequence[str] | None = ("PA", "AP"),
    splits: Sequence[str] | None = None,
    labeler: str = "chexpert",
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[Record]:
    """One Record per image (dicom) in metadata order.

    views: ViewPosition values to keep (None: all); splits: "train" / "validate" / "test" to keep
    (None: all); labeler: "chexpert" or "negbio". Images whose JPEG, report or split entry is
    missing, or whose report is empty, are skipped and (dicom_id, reason) is appended to
    `skipped` when given.
    """
    root = Path(root)
    if labeler not in LABEL_CSVS:
        raise DataError(f"unknown labeler {labeler!r}; valid: {sorted(LABEL_CSVS)}")
    if not root.is_dir():
        raise DataError(f"MIMIC-CXR root directory not found: {root}")
    paths = {name: root / name for name in (METADATA_CSV, SPLIT_CSV, LABEL_CSVS[labeler])}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"MIMIC-CXR table not found: {path}")
    split_of = {row["dicom_id"]: row["split"] for row in _rows(paths[SPLIT_CSV])}
    labels = _load_labels(paths[LABEL_CSVS[labeler]])
    keep_views = None if views is None else {v.upper() for v in views}
    keep_splits = None if splits is None else set(splits)
    empty = dict.fromkeys(CHEXPERT_LABELS)

    def skip(dicom: str, reason: str) -> None:
        if skipped is not None:
            skipped.append((dicom, reason))

    for row in _rows(paths[METADATA_CSV]):
        dicom, subject, study = row["dicom_id"], row["subject_id"], row["study_id"]
        view = row.get("ViewPosition", "") or ""
        if keep_views is not None and view.upper() not in keep_views:
            continue
        split = split_of.get(dicom)
        if split is None:
            skip(dicom, "no entry in the split table")
            continue
        if keep_splits is not None and split not in keep_splits:
            continue
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        image = folder / f"s{study}" / f"{dicom}.jpg"
        report = folder / f"s{study}.txt"
        if not image.is_file():
            skip(dicom, f"missing image {image}")
            continue
        if not report.is_file():
            skip(dicom, f"missing report {report}")
            continue
        text = report.read_text(encoding="utf-8")
        if not text.strip():
            skip(dicom, f"empty report {report}")
            continue
        yield Record(
            id=dicom,
            image_path=image.resolve(),
            report=text,
            labels=dict(labels.get(study, empty)),
            split=split,
            study_id=study,
            subject_id=subject,
            view=view,
        )
