"""Synthetic chest X-ray data in the real on-disk layouts, apart from the real-data pipeline.

config.py (SynthConfig, light), phantom.py (procedural radiographs with drawn findings),
reports.py (report templates and labels), phi.py (injected PHI values, markers, ground-truth
spans), study.py (the one per-study generator: findings, ids, split, report, PHI, images),
layouts/ (one writer per output layout, mirroring data/sources/), dicom.py (DICOM encodings),
text.py (text-only corpora), generate.py (`generate(cfg, out)`: one layout per call).
Light: importing the package or config.py imports no numpy, PIL or pydicom.
"""
