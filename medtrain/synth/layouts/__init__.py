"""Output layouts of the synthetic generator: one module per layout, mirroring data/sources/.

Each module defines `Writer` (see common.LayoutWriter): its `style` says how the shared
per-study generator (study.py) writes the report for this layout; `add(study)` writes one study
and returns its PHI ground-truth reference; `finish()` writes what is written once and returns
the counts of the summary. A new layout is a module here plus an entry in LAYOUT_MODULES (the
`medtrain data synth --layout` choices come from it).

Light on purpose (no numpy, PIL or pydicom): config.py and the CLI's help path import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medtrain.synth.layouts.common import LayoutWriter

# layout name (as `medtrain data synth --layout` and the reader registry spell it) -> module
LAYOUT_MODULES: dict[str, str] = {
    "mimic-cxr-jpg": "mimic_cxr",
    "openi": "openi",
    "r2gen": "r2gen",
    "dicom": "dicom",
    "manifest": "manifest",
    "rsna-pneumonia": "rsna",
    "vqa-rad": "vqa_rad",
    "slake": "slake",
}
# Layouts that write no reports (downstream-task data sets: labels, boxes, questions). Their
# writers' `add` returns {"report_id": <record id>, "path": None}; the PHI ground truth of their
# studies refers to no written text.
TASK_LAYOUTS: tuple[str, ...] = ("rsna-pneumonia", "vqa-rad", "slake")
REPORT_LAYOUTS: tuple[str, ...] = tuple(n for n in LAYOUT_MODULES if n not in TASK_LAYOUTS)


def layout_writer(name: str) -> type[LayoutWriter]:
    """The Writer class of layout `name` (imported on first use)."""
    if name not in LAYOUT_MODULES:
        raise ValueError(f"unknown synthetic layout {name!r}; valid: {list(LAYOUT_MODULES)}")
    return importlib.import_module(f"{__name__}.{LAYOUT_MODULES[name]}").Writer
