"""Synthetic chest X-ray data in the real on-disk layouts, apart from the real-data pipeline.

config.py (SynthConfig, light), phantom.py (procedural radiographs with drawn findings),
reports.py (report templates, labels, injected PHI), dicom.py (DICOM encodings), text.py
(text-only corpora), generate.py (`generate(cfg, out)`: one layout per call).
"""
