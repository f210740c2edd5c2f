"""Synthetic chest X-ray data sets written in the real on-disk layouts (DESIGN.md section 6).

`generate(SynthConfig(layout=...), out)` writes one layout, the same one its reader reads (the
layout modules in synth/layouts/ describe each):
- "mimic-cxr-jpg": JPEG images, report .txt files, gzip CSVs;
- "openi": ecgen-radiology XML + NLMCXR_png PNGs;
- "r2gen": annotation.json + images/<id>/{0,1}.png (IU X-ray as packaged by R2Gen);
- "dicom": a hospital export (see data/sources/dicom.py): export/S#####/IM####.dcm in the
  encodings of synth/dicom.py, reports.csv or report.txt, plus non-radiograph (CT) files to be
  skipped; hospital reports carry real-looking PHI instead of a data set's masks. Also writes
  dicom_truth.jsonl and pixel_truth/*.png, the phantoms a correct decoder recovers exactly;
- "manifest": images/*.png + manifest.jsonl or manifest.csv (`manifest_format`).
Every layout writes the studies of the one per-study generator (study.py) and
`phi_ground_truth.jsonl`: one line per report, {"report_id", "path", "spans"}, spans
[start, end, kind] into the raw report text the reader yields (Record.report; report_id equals
Record.study_id; for "dicom" with MEDTRAIN_ID_SALT unset). Everything is a function of
(seed, index): study i uses generators seeded from (seed, 1, i), so output is byte-identical for
a seed and can be chunked later.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from medtrain.data.labels import CHEXPERT_LABELS, POSITIVE, UNCERTAIN
from medtrain.synth.config import SynthConfig
from medtrain.synth.layouts import layout_writer
from medtrain.synth.study import Study, studies


class _Tally:
    """Summary counts: per-label positives/uncertain over studies, splits, PHI-bearing reports."""

    def __init__(self) -> None:
        self.positives: Counter[str] = Counter()
        self.uncertain: Counter[str] = Counter()
        self.splits: Counter[str] = Counter()
        self.phi_reports = 0

    def add(self, study: Study) -> None:
        for name, value in study.labels.items():
            self.positives[name] += value == POSITIVE
            self.uncertain[name] += value == UNCERTAIN
        self.splits[study.ids.split] += 1
        self.phi_reports += len(study.spans) > 0


def generate(cfg: SynthConfig, out: Path) -> dict:
    """Write the data set under `out`; return a summary (counts, label positives, speed, path)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tally = _Tally()
    writer_cls = layout_writer(cfg.layout)
    with ExitStack() as files:
        phi_file = files.enter_context(open(out / "phi_ground_truth.jsonl", "w", encoding="utf-8"))
        writer = writer_cls(cfg, out, files)
        for study in studies(cfg, writer_cls.style):
            ref = writer.add(study)
            if getattr(writer_cls, "reports", True):  # task layouts write no report
                phi_file.write(json.dumps(ref | {"spans": study.spans}) + "\n")
            tally.add(study)
        counts = writer.finish()
    if writer_cls.splits:
        counts["splits"] = dict(sorted(tally.splits.items()))
    seconds = time.perf_counter() - t0
    return {
        "layout": cfg.layout,
        "path": str(out),
        **counts,
        "phi_reports": tally.phi_reports,
        "positives": {n: tally.positives[n] for n in CHEXPERT_LABELS},
        "uncertain": {n: tally.uncertain[n] for n in CHEXPERT_LABELS},
        "seconds": round(seconds, 3),
        "images_per_s": round(counts["images"] / max(seconds, 1e-9), 1),
        "image_size": cfg.image_size,
    }
