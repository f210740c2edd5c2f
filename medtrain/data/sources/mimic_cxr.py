"""MIMIC-CXR-JPG reader: streams the gzip metadata CSV and pairs images with study reports.

Layout (DESIGN.md section 6): `files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg`, CSVs
`mimic-cxr-2.0.0-{metadata,split,chexpert,negbio}.csv.gz` in the root. Reports
`pXX/pSUBJECT/sSTUDY.txt` come from a separate archive (MIMIC-CXR's mimic-cxr-reports.zip unpacks
as `mimic-cxr-reports/files/p10/...`); they are looked for once per run, in this order, in the
`files/` folders of: the JPG tree itself (merged), `<root>/reports`, `<root>/mimic-cxr-reports`,
and the sibling folders `<root>/../mimic-cxr-reports`, `<root>/../reports`; or only where
`reports_root` says (that folder's `files/`, its `mimic-cxr-reports/files/`, or the folder
itself). The first place holding the report of one of the first PROBE_STUDIES studies of the
metadata wins; none (while the JPG tree has those studies' images) is a DataError listing the
places searched.

Memory stays bounded whatever the size of the source: the split table (per dicom) and the label
table (per study) are streamed into a temporary on-disk SQLite database (in the system temp
directory, never in the data root; removed when the iterator finishes or is closed), and the
metadata is streamed in batches of BATCH_ROWS rows whose split and label entries are looked up
with indexed `IN (...)` queries. Peak RSS growth is ~40 MB for a 1M-row metadata CSV, ~35 MB at
250k (dicts took ~0.7 KB a row: ~725 MB at 1M, ~7 GB for 10M); the database takes ~170 bytes
a metadata row on disk (~1.7 GB for 10M).
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from itertools import islice
from operator import itemgetter
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.data.sources.common import SPLITS, SkipLog, decode_report, has_escapes

# (line, cells, reason) -> the row to yield instead, or None to drop it (see _table)
BadRow = Callable[[int, list[str], str], "tuple[str | None, ...] | None"]

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
LABEL_CSVS = {
    "chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz",
    "negbio": "mimic-cxr-2.0.0-negbio.csv.gz",
}

BATCH_ROWS = 4096  # metadata rows read and looked up at a time
REPORT_ARCHIVE = "mimic-cxr-reports"  # the folder mimic-cxr-reports.zip unpacks to
PROBE_STUDIES = 64  # distinct studies from the head of the metadata that locate the reports
_IN_MAX = 512  # keys per `WHERE key IN (...)` query (below every SQLite variable limit)
_CACHE_KIB = 16 * 1024  # SQLite page cache bound
_KNOWN_CELLS = ("", "1.0", "0.0", "-1.0")  # label cells as the public CSVs write them
_SEP = ","  # joins the 14 validated label cells (no valid float text contains a comma)
_BAD = "\x00"  # a split / label-table value starting with this is the reason its row was bad


def _table(
    path: Path,
    columns: Sequence[str],
    *,
    optional: Sequence[str] = (),
    what: str = "columns",
    on_bad: BadRow | None = None,
) -> Iterator[tuple[str | None, ...]]:
    """The rows of a gzip CSV as tuples of `columns` then `optional` (blank lines skipped); a
    missing optional column reads as None. A missing required column is a DataError at the first
    data row. A malformed row (more or fewer cells than the header, bytes that are not UTF-8, a
    quoting error) is never dropped silently: `on_bad(line, cells, reason)` is called and what
    it returns (a tuple, or None to drop the row) is yielded in its place; without `on_bad` it
    is a DataError."""
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        index = {name: i for i, name in enumerate(header)}  # duplicate names: the last wins
        missing = [c for c in columns if c not in index]
        virtual = len(header)  # always-None column for missing optional ones
        idx = [index.get(c, virtual) for c in (*columns, *optional)]
        width = len(header)
        get = itemgetter(*idx)  # two or more columns: tuples
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                reason = f"malformed CSV at {path} line {reader.line_num}: {e}"
                if on_bad is None:
                    raise DataError(reason) from None
                out = on_bad(reader.line_num, [], reason)
                if out is not None:
                    yield out
                continue
            if not row:
                continue
            if missing:
                raise DataError(f"{path}: missing {what} {missing}")
            reason = ""
            if len(row) != width:
                what = "short" if len(row) < width else "long"
                reason = f"{what} row: {len(row)} of {width} cells at {path} line {reader.line_num}"
            elif not (joined := "".join(row)).isascii() and has_escapes(joined):
                reason = f"row is not valid UTF-8 at {path} line {reader.line_num}"
            if reason:
                if on_bad is None:
                    raise DataError(reason)
                out = on_bad(reader.line_num, row, reason)
                if out is not None:
                    yield out
                continue
            if virtual in idx:
                row.append(None)  # type: ignore[arg-type]
            yield get(row)


def _open_db(folder: str) -> sqlite3.Connection:
    # used by one generator only, which may be resumed from another thread than the first
    db = sqlite3.connect(
        Path(folder) / "tables.sqlite", isolation_level=None, check_same_thread=False
    )
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    db.execute("PRAGMA temp_store=FILE")  # CREATE INDEX sorts spill to disk, not to memory
    db.execute("CREATE TABLE split (dicom_id TEXT, split TEXT)")
    db.execute("CREATE TABLE labels (study_id TEXT, cells TEXT)")
    return db


def _cell(row: list[str], i: int) -> str:
    return row[i] if i < len(row) else ""


def _load_split(db: sqlite3.Connection, path: Path, skip: SkipLog) -> None:
    """dicom_id -> split, streamed in; a repeated dicom_id keeps its last row (as a dict did).
    A malformed row stores its reason (the dicom is then skipped with it)."""

    def bad(line: int, row: list[str], reason: str) -> tuple[str, str] | None:
        dicom = _cell(row, 0)  # dicom_id is the split table's first column
        if not dicom or has_escapes(dicom):  # no usable key: its dicom has no split entry
            skip(f"{path.name} line {line}", reason)
            return None
        return dicom, _BAD + reason

    def rows() -> Iterator[tuple[str | None, str | None]]:
        for dicom, split in _table(path, ("dicom_id", "split"), on_bad=bad):
            if split in SPLITS or (split or "").startswith(_BAD):
                yield dicom, split
            else:
                yield dicom, f"{_BAD}unknown split {split!r} in {path}; valid: {', '.join(SPLITS)}"

    db.execute("BEGIN")
    db.executemany("INSERT INTO split VALUES (?, ?)", rows())
    db.execute("COMMIT")
    db.execute("CREATE INDEX split_key ON split (dicom_id, split)")  # covering


def _load_labels(db: sqlite3.Connection, path: Path, skip: SkipLog) -> None:
    """study_id -> the 14 CheXpert cells (joined, validated here, parsed again on lookup). A
    row with a bad label value (anything but 1, 0, -1 written as a number, or blank: "2", "yes")
    or too few cells stores its reason, naming the column and the value, instead: the study's
    images are skipped with it (never trained on with labels the table did not give)."""
    valid = set(_KNOWN_CELLS)
    columns = ("study_id", *CHEXPERT_LABELS)
    study_col: list[int] = []

    def bad(line: int, row: list[str], reason: str) -> tuple[str, str] | None:
        if not study_col:  # the study_id column of the header (read on the first bad row)
            with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
                header = next(csv.reader(f), [])
            study_col.append(header.index("study_id") if "study_id" in header else 1)
        study = _cell(row, study_col[0])
        if not study or has_escapes(study):  # no usable key: the study reads as unlabelled
            skip(f"{path.name} line {line}", reason)
            return None
        return study, _BAD + reason

    def rows() -> Iterator[tuple[str | None, str]]:
        for study, *cells in _table(path, columns, what="label columns", on_bad=bad):
            if isinstance(cells[0], str) and cells[0].startswith(_BAD):  # from bad()
                yield study, cells[0]
                continue
            if not valid.issuperset(cells):
                wrong = next(
                    (
                        (name, c)
                        for name, c in zip(CHEXPERT_LABELS, cells, strict=True)
                        if c not in valid and not _is_label(c)
                    ),
                    None,
                )
                if wrong is not None:
                    name, value = wrong
                    yield (
                        study,
                        (
                            f"{_BAD}bad label value {value!r} for study {study} in {path} "
                            f"(column {name!r}; valid: 1, 0, -1 or blank)"
                        ),
                    )
                    continue
                valid.update(cells)  # type: ignore[arg-type]
            yield study, _SEP.join(cells)  # type: ignore[arg-type]

    db.execute("BEGIN")
    db.executemany("INSERT INTO labels VALUES (?, ?)", rows())
    db.execute("COMMIT")
    db.execute("CREATE INDEX labels_key ON labels (study_id)")


def _is_label(cell: str | None) -> bool:
    """Whether a label cell is blank or 1 / 0 / -1 written another way ("1", "-1.00")."""
    if cell is None:
        return False
    if cell.strip() == "":
        return True
    try:
        return float(cell) in (1.0, 0.0, -1.0)
    except ValueError:
        return False


def _lookup(db: sqlite3.Connection, table: str, key: str, keys: Iterable[str]) -> dict[str, str]:
    """key -> value for the given keys present in `table` (the last inserted row per key)."""
    value = "split" if table == "split" else "cells"
    keys = list(dict.fromkeys(keys))
    found: dict[str, str] = {}
    for i in range(0, len(keys), _IN_MAX):
        part = keys[i : i + _IN_MAX]
        marks = ",".join("?" * len(part))
        sql = f"SELECT {key}, {value} FROM {table} WHERE {key} IN ({marks}) ORDER BY rowid"
        found.update(db.execute(sql, part).fetchall())
    return found


def _drop(line: int, row: list[str], reason: str) -> None:
    return None  # probing only: the records pass reports the row


def report_places(root: Path, reports_root: str | Path | None = None) -> list[Path]:
    """The folders searched, in order, for `pXX/pSUBJECT/sSTUDY.txt` (see module docstring)."""
    root = Path(root)
    if reports_root:
        given = Path(reports_root)
        return [given / "files", given / REPORT_ARCHIVE / "files", given]
    parent = root.resolve().parent
    return [
        root / "files",
        root / "reports" / "files",
        root / REPORT_ARCHIVE / "files",
        parent / REPORT_ARCHIVE / "files",
        parent / "reports" / "files",
    ]


def _report_file(files: Path, subject: str, study: str) -> Path:
    return files / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"


def find_reports(root: Path, metadata: Path, reports_root: str | Path | None = None) -> Path | None:
    """The `files/` folder holding the reports (once per run): the first of `report_places`
    with the report of one of the first PROBE_STUDIES studies of the metadata. None when the
    metadata lists no study, or (reports_root unset) when the JPG tree holds none of those
    studies' images either (no files at all: each image is then skipped as missing);
    DataError naming the places searched when no place holds a report otherwise."""
    probes: dict[str, tuple[str, str]] = {}  # study -> (subject, a dicom of the study)
    probe_rows = _table(metadata, ("dicom_id", "subject_id", "study_id"), on_bad=_drop)
    with closing(probe_rows) as rows:
        for dicom, subject, study in rows:
            if dicom and subject and study:
                probes.setdefault(study, (subject, dicom))
            if len(probes) == PROBE_STUDIES:
                break
    if not probes:
        return None
    places = report_places(root, reports_root)
    for place in places:
        if any(_report_file(place, subj, study).is_file() for study, (subj, _) in probes.items()):
            return place
    jpg = root / "files"
    if not reports_root and not any(
        (_report_file(jpg, subj, study).with_suffix("") / f"{dicom}.jpg").is_file()
        for study, (subj, dicom) in probes.items()
    ):
        return None
    study, (subject, _) = next(iter(probes.items()))
    where = f"data.reports_root={str(reports_root)!r}" if reports_root else f"MIMIC-CXR {root}"
    raise DataError(
        f"{where}: no report found for the first {len(probes)} studies of {metadata.name} "
        f"(e.g. {_report_file(Path('files'), subject, study).as_posix()}); searched "
        f"{', '.join(str(p) for p in places)}. Unpack mimic-cxr-reports.zip into one of them "
        "or set data.reports_root (--reports-root) to the folder holding its files/"
    )


def iter_mimic_cxr(
    root: Path,
    *,
    views: Sequence[str] | None = ("PA", "AP"),
    splits: Sequence[str] | None = None,
    labeler: str = "chexpert",
    reports_root: str | Path | None = None,
    skipped: list[tuple[str, str]] | None = None,
    check_files: bool = True,
    fallback: str = "",
) -> Iterator[Record]:
    """One Record per image (dicom) in metadata order.

    views: ViewPosition values to keep (None: all); splits: "train" / "validate" / "test" to keep
    (None: all); labeler: "chexpert" or "negbio"; reports_root: where the reports archive was
    unpacked (None: search the usual places, see module docstring). Images whose JPEG, report or
    split entry is missing, or whose report is empty, are skipped and (dicom_id, reason) is
    appended to `skipped` when given. check_files=False enumerates from the tables alone
    (counting, planning): no image or report is looked at, `image_path` is the expected path
    under the resolved root and `report` is "".
    Malformed table rows are skipped with their file and line (a short metadata row as
    "<file> line N"; a bad split or label row skips the images it covers, with that reason), as
    are reports that are not valid UTF-8 unless `fallback` (data.text_fallback_encoding, e.g.
    cp1252) decodes them.
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
    reports = None  # check_files=False: no report is looked at
    if check_files:  # None from find_reports: the metadata names no study
        reports = find_reports(root, paths[METADATA_CSV], reports_root) or root / "files"
    with (
        tempfile.TemporaryDirectory(prefix="medtrain-mimic-") as tmp,
        closing(_open_db(tmp)) as db,
    ):
        _load_split(db, paths[SPLIT_CSV], SkipLog(skipped))
        _load_labels(db, paths[LABEL_CSVS[labeler]], SkipLog(skipped))
        yield from _records(
            db, root, reports, paths[METADATA_CSV], views, splits, skipped, fallback
        )


def _records(
    db: sqlite3.Connection,
    root: Path,
    reports: Path | None,
    metadata: Path,
    views: Sequence[str] | None,
    splits: Sequence[str] | None,
    skipped: list[tuple[str, str]] | None,
    fallback: str = "",
) -> Iterator[Record]:
    """reports: the folder holding the reports; None: check_files=False (tables only)."""
    keep_views = None if views is None else {v.upper() for v in views}
    keep_splits = None if splits is None else set(splits)
    empty = (None,) * len(CHEXPERT_LABELS)
    parsed: dict[str, tuple[float | None, ...]] = {}  # joined cells -> values (few distinct)
    resolved = root.resolve()
    skip = SkipLog(skipped)

    def bad(line: int, row: list[str], reason: str) -> None:
        skip(f"{metadata.name} line {line}", reason)

    rows = _table(
        metadata, ("dicom_id", "subject_id", "study_id"), optional=("ViewPosition",), on_bad=bad
    )

    def values(cells: str | None) -> tuple[float | None, ...]:
        if cells is None:
            return empty
        out = parsed.get(cells)
        if out is None:
            if len(parsed) >= 65536:  # bound the cache even for pathological label tables
                parsed.clear()
            out = parsed[cells] = tuple(  # validated when loaded
                None if c.strip() == "" else float(c) for c in cells.split(_SEP)
            )
        return out

    while batch := list(islice(rows, BATCH_ROWS)):
        if keep_views is not None:
            batch = [r for r in batch if (r[3] or "").upper() in keep_views]
        split_of = _lookup(db, "split", "dicom_id", (r[0] for r in batch))
        labels = _lookup(
            db,
            "labels",
            "study_id",
            (
                r[2]
                for r in batch
                if (s := split_of.get(r[0])) is not None
                and (keep_splits is None or s in keep_splits)
            ),
        )
        for dicom, subject, study, view in batch:
            view = view or ""
            split = split_of.get(dicom)
            if split is None:
                skip(dicom, "no entry in the split table")
                continue
            if split.startswith(_BAD):
                skip(dicom, split[1:])
                continue
            if keep_splits is not None and split not in keep_splits:
                continue
            cells = labels.get(study)
            if cells is not None and cells.startswith(_BAD):
                skip(dicom, cells[1:])
                continue
            label_values = dict(zip(CHEXPERT_LABELS, values(cells), strict=True))
            if reports is None:
                image = resolved / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
                yield Record(
                    id=dicom,
                    image_path=image / f"{dicom}.jpg",
                    report="",
                    labels=label_values,
                    split=split,
                    study_id=study,
                    subject_id=subject,
                    view=view,
                )
                continue
            folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
            image = folder / f"s{study}" / f"{dicom}.jpg"
            report = _report_file(reports, subject, study)
            if not image.is_file():
                skip(dicom, f"missing image {image}")
                continue
            if not report.is_file():
                skip(dicom, f"missing report {report}")
                continue
            try:
                text = decode_report(report.read_bytes(), fallback, str(report))
            except DataError as e:
                skip(dicom, str(e))
                continue
            if not text.strip():
                skip(dicom, f"empty report {report}")
                continue
            yield Record(
                id=dicom,
                image_path=image.resolve(),
                report=text,
                labels=label_values,
                split=split,
                study_id=study,
                subject_id=subject,
                view=view,
            )
