"""Bounded memory of the MIMIC-CXR reader: a generated 1M-row metadata CSV is enumerated in a
subprocess and its peak RSS growth is measured (the split and label tables live in a temporary
on-disk SQLite database, not in Python dicts)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.sources.mimic_cxr import LABEL_CSVS, METADATA_CSV, SPLIT_CSV

_META_HEADER = (
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,"
    "StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning\n"
)
_LABEL_CELLS = tuple(  # four label rows, cycling through blank / 1.0 / 0.0 / -1.0
    ",".join(("", "1.0", "0.0", "-1.0")[(k + i) % 4] for i in range(len(CHEXPERT_LABELS)))
    for k in range(4)
)
_CHUNK = 50_000  # rows formatted and compressed at a time


def _dicom(study: int, image: int) -> str:
    """A 44-character MIMIC-style id, scattered so the key index is not filled in order."""
    h = (study * 2654435761 + image * 40503) & 0xFFFFFFFF
    return f"{h:08x}-{study:08x}-{image:08x}-{h ^ 0x5BD1E995:08x}-{study * 7 & 0xFFFFFFFF:08x}"


def write_synthetic_mimic(root: Path, n_rows: int) -> tuple[int, int]:
    """Metadata/split/chexpert gzip CSVs with `n_rows` metadata rows (no images or reports).

    Study k has a frontal image (AP every third study, PA otherwise) and, for even k, a lateral
    one. Every 97th study's frontal image has no split entry (skipped by the reader); every 13th
    study has no label row. Returns (frontal images with a split entry, frontal images without):
    what `iter_mimic_cxr(root, check_files=False)` yields and skips.
    """
    root.mkdir(parents=True, exist_ok=True)
    frontal = no_split = 0
    with (
        gzip.open(root / METADATA_CSV, "wb", compresslevel=1) as meta,
        gzip.open(root / SPLIT_CSV, "wb", compresslevel=1) as split,
        gzip.open(root / LABEL_CSVS["chexpert"], "wb", compresslevel=1) as labels,
    ):
        meta.write(_META_HEADER.encode())
        split.write(b"dicom_id,study_id,subject_id,split\n")
        labels.write(("subject_id,study_id," + ",".join(CHEXPERT_LABELS) + "\n").encode())
        rows = study = 0
        while rows < n_rows:
            m_lines, s_lines, l_lines = [], [], []
            end = min(n_rows, rows + _CHUNK)
            while rows < end:
                subject, sid = 10_000_000 + study // 3, 50_000_000 + study
                name = "test" if study % 50 == 0 else "validate" if study % 50 == 1 else "train"
                views = ("AP" if study % 3 == 0 else "PA",) + (
                    ("LATERAL",) if study % 2 == 0 else ()
                )
                for j, view in enumerate(views[: end - rows]):
                    dicom = _dicom(study, j)
                    m_lines.append(
                        f"{dicom},{subject},{sid},CHEST (PA AND LAT),{view},3056,2544,21800506,"
                        f"213014.531,CHEST (PA AND LAT),{view.lower()},Erect\n"
                    )
                    rows += 1
                    if j == 0 and study % 97 == 0:
                        no_split += 1  # no split entry: skipped
                        continue
                    s_lines.append(f"{dicom},{sid},{subject},{name}\n")
                    frontal += j == 0
                if study % 13:
                    l_lines.append(f"{subject},{sid},{_LABEL_CELLS[study % 4]}\n")
                study += 1
            meta.write("".join(m_lines).encode())
            split.write("".join(s_lines).encode())
            labels.write("".join(l_lines).encode())
    return frontal, no_split


_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from medtrain.data.sources.mimic_cxr import iter_mimic_cxr

    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    before, skipped, count, t0 = peak_kib(), [], 0, time.perf_counter()
    for _ in iter_mimic_cxr(Path(sys.argv[1]), skipped=skipped, check_files=False):
        count += 1
    seconds = time.perf_counter() - t0
    growth = (peak_kib() - before) / 1024
    print(json.dumps({"count": count, "skipped": len(skipped), "rss_growth_mb": growth,
                      "seconds": seconds}))
    """
)


def _enumerate_in_subprocess(root: Path, tmp: Path) -> dict:
    """Enumerate `root` in a fresh interpreter (peak RSS is per process) with TMPDIR=`tmp`."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mimic_enumeration_memory_is_bounded(tmp_path):
    """1M metadata rows enumerate in < 150 MB of RSS growth, and 250k vs 1M differ by < 50 MB
    (the dict version grew ~0.7 KB a row: ~180 MB at 250k, ~725 MB at 1M)."""
    results = {}
    for n in (250_000, 1_000_000):
        root, tmp = tmp_path / f"mimic-{n}", tmp_path / f"tmp-{n}"
        tmp.mkdir()
        expected, no_split = write_synthetic_mimic(root, n)
        got = results[n] = _enumerate_in_subprocess(root, tmp)
        assert (got["count"], got["skipped"]) == (expected, no_split), got
        assert got["rss_growth_mb"] < 150, got
        # the database lived in the temp directory, which is cleaned up; the root is untouched
        assert sorted(p.name for p in root.iterdir()) == sorted(
            [METADATA_CSV, SPLIT_CSV, LABEL_CSVS["chexpert"]]
        )
        assert list(tmp.iterdir()) == []
    assert results[1_000_000]["rss_growth_mb"] - results[250_000]["rss_growth_mb"] < 50, results
