"""What the layout writers share: the Writer protocol and reproducible CSV helpers."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.synth.config import SynthConfig
from medtrain.synth.study import Study, StudyStyle


class LayoutWriter(Protocol):
    """One output layout. generate() makes one per call: Writer(cfg, out, files), then add()
    for each study in file order, then finish(); files opened through `files` (an ExitStack)
    are closed after finish()."""

    style: ClassVar[StudyStyle]  # how study.py writes the report for this layout
    splits: ClassVar[bool]  # the summary counts studies per split

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None: ...

    def add(self, study: Study) -> dict[str, Any]:
        """Write one study; return its PHI ground-truth reference: {"report_id", "path", ...}
        (report_id equals the Record.study_id the reader yields, path the file holding the
        report, relative to `out`); generate() adds the spans."""
        ...

    def finish(self) -> dict[str, Any]:
        """Write the files written once; return the counts ("images", "frontal", ...)."""
        ...


@contextmanager
def gzip_csv(path: Path) -> Iterator[Any]:
    """csv.writer into a reproducible gzip file (no name, mtime 0 in the header)."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
    ):
        yield csv.writer(text, lineterminator="\n")


def label_cells(labels: dict[str, float | None]) -> list[str]:
    """The 14 CheXpert labels as CSV cells: "1.0", "0.0", "-1.0" or "" (not mentioned)."""
    return ["" if labels[n] is None else f"{labels[n]:.1f}" for n in CHEXPERT_LABELS]


def matching_name(make: Callable[[int], str], split_of: Callable[[str], str], want: str) -> str:
    """The first make(k), k = 0, 1, ..., whose reader-side split (`split_of`, a stable hash of
    the name) is `want`: ids of data sets without a split file chosen so that the reader's
    hashed split equals the study's subject split (deterministic)."""
    for k in range(100_000):
        name = make(k)
        if split_of(name) == want:
            return name
    raise RuntimeError(f"no name with split {want!r} in 100000 tries")  # p < 1e-4000
