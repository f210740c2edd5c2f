"""Hospital DICOM export reader: *.dcm files under ROOT plus report text from the RIS.

Convention for an export (what users prepare; `medtrain data synth --layout dicom` writes it):

    ROOT/
      reports.csv                  columns AccessionNumber, report[, split]: the RIS export
                                   (UTF-8, RFC 4180 quoting, so reports may span lines)
      <any folders>/<name>.dcm     radiographs at any depth, any file names (suffix .dcm, any case)
      <folder>/report.txt          optional: the report for every .dcm directly in <folder>;
                                   takes precedence over reports.csv

Headers are read with pydicom (`stop_before_pixels`; pixels are decoded later, images.py).
Only Modality CR and DX are kept; other modalities (CT localizers, SR, PR, ...) are skipped
with a reason, as are unreadable headers, files whose report is missing or empty.

Identifiers are never kept in clear: Record.subject_id, study_id and id are keyed hashes
(`common.pseudonym`, key $MEDTRAIN_ID_SALT or `salt`) of PatientID, StudyInstanceUID and
SOPInstanceUID (the path below ROOT when a UID is missing). The AccessionNumber is only used to
find the report. ViewPosition LL / RL / LAT / LATERAL becomes "LATERAL"; AP and PA are kept.
Split: the `split` column when given, else a hash of the pseudonymous patient id (one patient,
one split). Records: labels all None, image_kind "dicom".
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydicom import dcmread

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.data.sources.common import (
    SkipLog,
    csv_rows,
    decode_report,
    hash_split,
    normalize_split,
    pseudonym,
    unescape_text,
)

REPORTS_CSV, REPORT_TXT = "reports.csv", "report.txt"
MODALITIES = frozenset({"CR", "DX"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})
HEADER_TAGS = (
    "Modality",
    "PatientID",
    "StudyInstanceUID",
    "SOPInstanceUID",
    "AccessionNumber",
    "ViewPosition",
)


def _load_reports(
    path: Path, fallback: str, skip: SkipLog
) -> dict[str, tuple[str | None, str, str]]:
    """AccessionNumber -> (report or None, split or "", why the row is unusable or "") from
    reports.csv; {} when the file is absent. A row with too few cells or without an accession
    number is skipped with its line; a bad split or a report that is not valid UTF-8 (without
    `fallback`) keeps its reason, given to the images of that accession number."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or ())
        missing = {"AccessionNumber", "report"} - set(columns)
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        out: dict[str, tuple[str | None, str, str]] = {}
        for row in csv_rows(reader, path, skip):
            where = f"{path} line {reader.line_num}"
            accession = (row.get("AccessionNumber") or "").strip()
            if None in row or None in row.values() or not accession:
                skip(where, f"malformed row (cells missing or extra, or no AccessionNumber) "
                     f"at {where}")  # fmt: skip
                continue
            try:
                split = row.get("split") or ""
                split = normalize_split(split, where) if split else ""
                out[accession] = (unescape_text(row["report"] or "", fallback, where), split, "")
            except DataError as e:
                out[accession] = (None, "", str(e))
    return out


def _view(value: str) -> str:
    v = value.strip().upper()
    return "LATERAL" if v in LATERAL_VIEWS else v


def _header(path: Path) -> tuple[dict[str, str] | None, str]:
    """(tag -> str value, "") or (None, why the header cannot be used)."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    except Exception as e:  # noqa: BLE001 - any parser failure on a bad file is a skip
        return None, f"unreadable DICOM header in {path}: {type(e).__name__}: {e}"
    values = {tag: str(ds.get(tag, "") or "").strip() for tag in HEADER_TAGS}
    if not values["Modality"]:
        return None, f"no Modality in the DICOM header of {path} (truncated or incomplete file)"
    return values, ""


def iter_dicom(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    views: Sequence[str] | None = None,
    salt: str | None = None,
    skipped: list[tuple[str, str]] | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """One Record per CR/DX file, files in sorted path order.

    views: view positions to keep after normalization (None: all, including unknown "").
    salt: key of the identifier hashes (None: $MEDTRAIN_ID_SALT, empty when unset).
    fallback: decoding of reports that are not valid UTF-8 (data.text_fallback_encoding; ""
    skips them with the reason).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"DICOM export root directory not found: {root}")
    skip = SkipLog(skipped)
    reports = _load_reports(root / REPORTS_CSV, fallback, skip)
    keep_splits = None if splits is None else {normalize_split(s, "splits") for s in splits}
    keep_views = None if views is None else {_view(v) for v in views}
    folder_bad: dict[Path, str] = {}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".dcm" and p.is_file())
    folder_reports: dict[Path, str | None] = {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        head, why = _header(path)
        if head is None:
            skip(rel, why)
            continue
        if head["Modality"].upper() not in MODALITIES:
            skip(rel, f"modality {head['Modality']} is not CR/DX: {path}")
            continue
        view = _view(head["ViewPosition"])
        if keep_views is not None and view not in keep_views:
            continue
        if path.parent not in folder_reports:
            txt, folder_reports[path.parent] = path.parent / REPORT_TXT, None
            if txt.is_file():
                try:
                    folder_reports[path.parent] = decode_report(
                        txt.read_bytes(), fallback, str(txt)
                    )
                except DataError as e:
                    folder_bad[path.parent] = str(e)
        if path.parent in folder_bad:
            skip(rel, folder_bad[path.parent])
            continue
        text, split, why = folder_reports[path.parent], "", ""
        if text is None:
            text, split, why = reports.get(head["AccessionNumber"], (None, "", ""))
        if why:
            skip(rel, why)
            continue
        if text is None:
            skip(rel, f"no report for {path}: no {REPORT_TXT} beside it and its accession "
                 f"number is not in {root / REPORTS_CSV}")  # fmt: skip
            continue
        if not text.strip():
            skip(rel, f"empty report for {path}")
            continue
        subject = pseudonym(head["PatientID"], salt) if head["PatientID"] else ""
        study = pseudonym(head["StudyInstanceUID"] or f"{root}:{path.parent}", salt)
        split = split or hash_split(subject or study)
        if keep_splits is not None and split not in keep_splits:
            continue
        yield Record(
            id=pseudonym(head["SOPInstanceUID"] or rel, salt),
            image_path=path.resolve(),
            report=text,
            labels=dict.fromkeys(CHEXPERT_LABELS),
            split=split,
            study_id=study,
            subject_id=subject,
            view=view,
            image_kind="dicom",
        )
