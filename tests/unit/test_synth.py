"""Synthetic data: determinism, real layouts, label/report agreement, drawn findings, PHI truth,
and every layout writing the records of the one per-study generator."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.synth.config import LAYOUTS, SynthConfig
from medtrain.synth.dicom import VARIANTS
from medtrain.synth.generate import generate
from medtrain.synth.layouts import LAYOUT_MODULES, REPORT_LAYOUTS, layout_writer
from medtrain.synth.layouts.mimic_cxr import METADATA_COLUMNS
from medtrain.synth.phantom import Finding, draw_phantom
from medtrain.synth.reports import FINDING_LABELS, FINDING_WORDS
from medtrain.synth.study import Study, StudyStyle, make_study

N = 24
LABEL_HEADER = ["subject_id", "study_id", *CHEXPERT_LABELS]


def _csv(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mimic")
    cfg = SynthConfig(n=N, image_size=128, lateral_fraction=0.3, phi_fraction=0.5, seed=3)
    return out, generate(cfg, out)


@pytest.fixture(scope="module")
def openi(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("openi")
    return out, generate(SynthConfig(layout="openi", n=12, image_size=64, seed=3), out)


def _text_digest(tree: dict[str, bytes]) -> str:
    """Digest of the text files (gzip CSVs decompressed): reports, CSVs, JSON, XML, truth."""
    h = hashlib.sha256()
    for name in sorted(tree):
        if name.endswith((".txt", ".json", ".jsonl", ".csv", ".xml")):
            data = tree[name]
        elif name.endswith(".csv.gz"):
            data = gzip.decompress(tree[name])
        else:
            continue
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


# Text output of the configuration below, recorded before the move to study.py + layouts/ and
# unchanged by it. A change here changes every synthetic data set (and the README figures made
# from them): if intended, record the new digests and say so in the change.
GOLDEN_TEXT = {
    ("mimic-cxr-jpg", "jsonl"): "f740d64af519b4c6",
    ("openi", "jsonl"): "1929a445a62e643c",
    ("r2gen", "jsonl"): "d41183ff1f8f23fe",
    ("dicom", "jsonl"): "b0642bb4b3c6be9d",
    ("manifest", "jsonl"): "8d42fc90162b86a3",
    ("manifest", "csv"): "5786d8f161fb7038",
}


@pytest.mark.parametrize("layout,fmt", list(GOLDEN_TEXT))
def test_same_seed_identical_bytes_different_seed_differs(tmp_path, layout, fmt):
    cfg = dict(layout=layout, n=8, image_size=64, lateral_fraction=0.5, phi_fraction=0.5)
    cfg |= dict(manifest_format=fmt)
    a = _tree(Path(generate(SynthConfig(**cfg, seed=1), tmp_path / "a")["path"]))
    b = _tree(Path(generate(SynthConfig(**cfg, seed=1), tmp_path / "b")["path"]))
    c = _tree(Path(generate(SynthConfig(**cfg, seed=2), tmp_path / "c")["path"]))
    assert a == b
    assert a != c
    images_a = sorted(v for k, v in a.items() if k.endswith((".jpg", ".png", ".dcm")))
    images_c = sorted(v for k, v in c.items() if k.endswith((".jpg", ".png", ".dcm")))
    assert images_a != images_c
    assert _text_digest(a) == GOLDEN_TEXT[layout, fmt]


def test_golden_cases_cover_every_layout():  # task layouts: tests/unit/test_synth_tasks.py
    assert {layout for layout, _ in GOLDEN_TEXT} == set(REPORT_LAYOUTS)


def test_layout_registry():
    assert tuple(LAYOUT_MODULES) == LAYOUTS
    for name in LAYOUTS:
        writer = layout_writer(name)
        assert isinstance(writer.style, StudyStyle) and isinstance(writer.splits, bool)
        assert callable(writer.add) and callable(writer.finish)
    with pytest.raises(ValueError, match="valid"):
        layout_writer("chexpert")


def _stored(layout: str, out: Path) -> list[dict]:
    """Per study, in generation order, what `layout` stored: report text (or Open-I sections),
    labels and split where the layout keeps them, image pixels (PNG layouts), PHI spans."""
    truth = [json.loads(x) for x in (out / "phi_ground_truth.jsonl").read_text().splitlines()]

    def png(path: str | Path) -> np.ndarray:
        return np.asarray(Image.open(out / path))

    if layout == "manifest":
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    if layout == "r2gen":
        entries = [e for v in json.loads((out / "annotation.json").read_text()).values() for e in v]
        by_id = {e["id"]: e for e in entries}
    if layout == "dicom":
        with open(out / "reports.csv", newline="") as f:
            by_accession = {r["AccessionNumber"]: r["report"] for r in csv.DictReader(f)}
    if layout == "mimic-cxr-jpg":
        labels = {r["study_id"]: r for r in _csv(out / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    stored = []
    for i, gt in enumerate(truth):
        got: dict = {"spans": [tuple(s) for s in gt["spans"]]}
        if layout == "mimic-cxr-jpg":
            got["text"] = (out / gt["path"]).read_text()
            row = labels[gt["report_id"]]
            got["labels"] = {n: float(row[n]) if row[n] else None for n in CHEXPERT_LABELS}
        elif layout == "openi":
            root = ET.parse(out / gt["path"]).getroot()
            texts = root.iterfind("MedlineCitation/Article/Abstract/AbstractText")
            got["sections"] = {e.get("Label"): e.text for e in texts if e.text}
            got["images"] = [png(f"NLMCXR_png/{root.find('parentImage').get('id')}.png")]
        elif layout == "r2gen":
            entry = by_id[gt["report_id"]]
            got |= {
                "text": entry["report"],
                "images": [png(f"images/{p}") for p in entry["image_path"]],
            }
            got["split"] = {"val": "validate"}.get(entry["split"], entry["split"])
        elif layout == "dicom":
            path = gt["path"]
            got["text"] = (
                by_accession[gt["accession"]] if path == "reports.csv" else (out / path).read_text()
            )
            got["images"] = [png(p) for p in sorted(out.glob(f"pixel_truth/S{i:05d}/*.png"))]
        else:  # manifest
            mine = [r for r in rows if r["study_id"] == gt["report_id"]]
            assert len({r["report"] for r in mine}) == 1
            got |= {
                "text": mine[0]["report"],
                "labels": mine[0]["labels"],
                "split": mine[0]["split"],
            }
            got["images"] = [png(r["image"]) for r in mine]
        stored.append(got)
    return stored


def test_every_layout_writes_the_shared_study_records(tmp_path):
    """Each layout stores exactly its studies from study.py; one (seed, index) gives the same
    findings, ids and images in every layout, and the same view/lateral/PHI choice (and, with
    the same draws before the report, the same labels) in layouts that share those draws."""
    n = 8
    studies: dict[str, list[Study]] = {}
    for layout in LAYOUTS:
        options = dict(image_size=32, lateral_fraction=0.5, phi_fraction=0.5, seed=5)
        cfg = SynthConfig(layout=layout, n=n, **options)
        mine = [make_study(cfg, i, layout_writer(layout).style) for i in range(n)]
        studies[layout] = mine
        if layout not in REPORT_LAYOUTS:  # stored fields checked in test_synth_tasks.py
            continue
        out = Path(generate(cfg, tmp_path / layout)["path"])
        for study, got in zip(mine, _stored(layout, out), strict=True):
            assert got["spans"] == study.spans
            if "text" in got:
                assert got["text"] == study.text
            if "sections" in got:
                assert got["sections"] == {h: b for h, b in study.sections if b}
            if "labels" in got:
                assert got["labels"] == study.labels
            if "split" in got:
                assert got["split"] == study.ids.split
            if "images" in got:
                assert len(got["images"]) == len(study.images)
                for pixels, image in zip(got["images"], study.images, strict=True):
                    assert np.array_equal(pixels, image.draw())
    with_views = [lay for lay in LAYOUTS if layout_writer(lay).style.views]
    same_draws = [lay for lay in with_views if not layout_writer(lay).style.acquisition]
    assert len(with_views) >= 4 and len(same_draws) >= 3
    assert sum(s.phi for s in studies["manifest"]) > 0
    for i in range(n):
        ref = studies[LAYOUTS[0]][i]
        frontal = ref.images[0].draw()
        for layout in LAYOUTS:
            s = studies[layout][i]
            assert s.findings == ref.findings and s.ids == ref.ids
            assert np.array_equal(s.images[0].draw(), frontal)
        for layout in with_views:
            s, v = studies[layout][i], studies[with_views[0]][i]
            assert (s.view, s.phi, [im.position for im in s.images]) == (
                v.view, v.phi, [im.position for im in v.images]
            )  # fmt: skip
        for layout in same_draws:
            assert studies[layout][i].labels == studies[same_draws[0]][i].labels


def test_study_image_draw_is_pure():
    cfg = SynthConfig(n=3, image_size=32, lateral_fraction=1.0, seed=2)
    study = make_study(cfg, 1, layout_writer("manifest").style)
    assert [im.position for im in study.images][1] == "LATERAL"
    for image in study.images:
        assert np.array_equal(image.draw(), image.draw())
    assert not np.array_equal(study.images[0].draw(), study.images[1].draw())


def test_mimic_layout_paths_and_csv_columns(mimic):
    out, summary = mimic
    meta = _csv(out / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert list(meta[0]) == list(METADATA_COLUMNS)
    split = _csv(out / "mimic-cxr-2.0.0-split.csv.gz")
    assert list(split[0]) == ["dicom_id", "study_id", "subject_id", "split"]
    for name in ("chexpert", "negbio"):
        rows = _csv(out / f"mimic-cxr-2.0.0-{name}.csv.gz")
        assert list(rows[0]) == LABEL_HEADER and len(rows) == N
        cells = {r[n] for r in rows for n in CHEXPERT_LABELS}
        assert cells <= {"1.0", "0.0", "-1.0", ""} and {"1.0", ""} <= cells
    assert len(meta) == summary["images"] == N + summary["lateral"] and summary["lateral"] > 0
    for row in meta:
        subj, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        assert re.fullmatch(r"1\d{7}", subj) and re.fullmatch(r"5\d{7}", study)
        assert re.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}", dicom)
        folder = out / "files" / f"p{subj[:2]}" / f"p{subj}"
        assert (folder / f"s{study}" / f"{dicom}.jpg").is_file()
        assert (folder / f"s{study}.txt").is_file()
        assert row["ViewPosition"] in ("PA", "AP", "LATERAL")
        assert int(row["Rows"]) == int(row["Columns"]) == 128
    with Image.open(next(out.rglob("*.jpg"))) as im:
        assert im.mode == "L" and im.size == (128, 128)
    by_subject: dict[str, set[str]] = {}
    for row in split:
        by_subject.setdefault(row["subject_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_subject.values())  # split assigned by subject
    assert set().union(*by_subject.values()) <= {"train", "validate", "test"}


def test_openi_layout(openi):
    out, summary = openi
    xmls = sorted((out / "ecgen-radiology").glob("*.xml"))
    assert len(xmls) == summary["reports"] == 12
    root = ET.parse(out / "ecgen-radiology" / "1.xml").getroot()
    assert root.tag == "eCitation" and root.find("uId").get("id") == "CXR1"
    labels = [
        e.get("Label") for e in root.iterfind("MedlineCitation/Article/Abstract/AbstractText")
    ]
    assert labels == ["COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"]
    image_id = root.find("parentImage").get("id")
    assert re.fullmatch(r"CXR1_IM-\d{4}-1001", image_id)
    assert (out / "NLMCXR_png" / f"{image_id}.png").is_file()
    assert root.find("MeSH") is not None


def test_labels_agree_with_report_text(mimic):
    out, _ = mimic
    rows = _csv(out / "mimic-cxr-2.0.0-chexpert.csv.gz")
    pathologies = [n for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices")]
    for row in rows:
        subj, study = row["subject_id"], row["study_id"]
        text = (out / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}.txt").read_text().lower()
        for kind, names in FINDING_LABELS.items():
            if kind in ("consolidation", "edema"):  # these share Lung Opacity; check their own
                names = names[:1]
            if any(row[n] in ("1.0", "-1.0") for n in names):
                assert any(w in text for w in FINDING_WORDS[kind]), (kind, text)
        if row["No Finding"] == "1.0":
            assert not any(row[n] in ("1.0", "-1.0") for n in pathologies)
        else:
            assert any(row[n] in ("1.0", "-1.0") for n in pathologies)
        if row["Pleural Effusion"] == "0.0":
            assert "effusion" in text or "costophrenic" in text


_NAME = r"[A-Z][A-Za-z'-]+|[A-Z]\.|[a-z][a-z'-]+"
PHI_PATTERNS = {  # every form the injector writes, per ground-truth kind
    "NAME": rf"((Dr|Mr|Ms|Mrs|dr)\. |Doctor )?({_NAME})(,? ({_NAME}))*",
    "DATE": r"[\w ,./-]*\d[\w ,./-]*",
    "TIME": r"\d{1,2}(:\d{2}){0,2}( ?([AaPp]\.?[Mm]\.?)| hours)?|\d{4} hours",
    "AGE": r"(9\d|10[0-5])",
    "MRN": r"\d{7,8}",
    "ACCESSION": r"(A|E|RAD-\d{4}-)?\d{6,8}",
    "ID": r"(V|PT-)?\d{7,8}|\d{3}-\d{2}-\d{4}",
    "PHONE": r"(\+1 |1-)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}( ext\. \d+)?|\d{4,5}",
    "EMAIL": r"[\w.]+@[\w.-]+",
    "URL": r"(https?://|www\.)\S+",
    "ADDRESS": r"\d+ [A-Z][a-z]+ [A-Z][a-z]+\.?(, [\w .-]+)*",
    "HOSPITAL": r"[A-Z][\w'. ]+(Hospital|Center|Clinic|of Fairview)",
}


def test_phi_ground_truth_points_at_injected_strings(mimic):
    out, summary = mimic
    lines = [json.loads(x) for x in (out / "phi_ground_truth.jsonl").read_text().splitlines()]
    assert len(lines) == N and 0 < summary["phi_reports"] < N
    seen = set()
    for line in lines:
        text = (out / line["path"]).read_text()
        for start, end, kind in line["spans"]:
            value = text[start:end]
            assert re.fullmatch(PHI_PATTERNS[kind], value), (kind, value)
            assert value == value.strip() and "\n" not in value  # wrapping keeps PHI whole
            seen.add(kind)
    assert "NAME" in seen and len(seen) >= 3


def test_hospital_reports_carry_raw_phi_and_distractors():
    """placeholder=None: no data set masks; names/dates/ages > 89 marked, ages <= 89 not."""
    from medtrain.synth.text import labelled_reports

    data = labelled_reports(90, seed=4)
    hospital = [(t, s) for t, s, style in data if style == "hospital"]
    assert hospital and not any("___" in t or "XXXX" in t for t, _ in hospital)
    kinds = {k for _, spans in hospital for *_, k in spans}
    assert {"NAME", "DATE", "AGE"} <= kinds
    for text, spans in hospital:
        for m in re.finditer(r"\b(\d{2,3})(?=-year-old| y/o|F with)", text):
            marked = any(s <= m.start() < e for s, e, _ in spans)
            assert marked == (int(m.group(1)) > 89), (m.group(0), text)
    all_text = " ".join(t for t, _, _ in data)
    assert "PA and lateral" in all_text or "Fleischner" in all_text or "T11-T12" in all_text


def test_phi_fraction_zero_has_no_spans(tmp_path):
    out = Path(generate(SynthConfig(n=6, image_size=32, phi_fraction=0.0), tmp_path)["path"])
    lines = [json.loads(x) for x in (out / "phi_ground_truth.jsonl").read_text().splitlines()]
    assert all(line["spans"] == [] for line in lines)


def _pair(findings: list[Finding], size: int = 128, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Same generator state with and without the findings: (normal, abnormal) as float."""
    a = draw_phantom(np.random.default_rng(seed), [], size).astype(np.float32)
    b = draw_phantom(np.random.default_rng(seed), findings, size).astype(np.float32)
    return a, b


def test_cardiomegaly_enlarges_bright_heart_region():
    a, b = _pair([Finding(kind="cardiomegaly", severity="moderate")])
    region = (slice(72, 96), slice(88, 104))  # v 0.13..0.5, u 0.38..0.63: beyond a normal heart
    assert b[region].mean() > a[region].mean() + 30


def test_effusion_brightens_the_named_base_only():
    a, b = _pair([Finding(kind="effusion", side="right", severity="moderate")])
    right_base = (slice(80, 96), slice(8, 32))  # v 0.25..0.5; patient right = image left
    left_base = (slice(80, 96), slice(96, 120))
    assert b[right_base].mean() > a[right_base].mean() + 15
    assert abs(b[left_base].mean() - a[left_base].mean()) < 2


def test_pneumothorax_darkens_named_apex():
    a, b = _pair([Finding(kind="pneumothorax", side="left", severity="moderate")])
    left_lateral = (slice(40, 90), slice(104, 118))  # u 0.63..0.84: lateral rim of left lung
    assert b[left_lateral].mean() < a[left_lateral].mean() - 10
    assert np.abs(b[:, :50] - a[:, :50]).mean() < 1


@pytest.mark.parametrize(
    "finding",
    [
        Finding(kind="consolidation", side="right", zone="lower"),
        Finding(kind="consolidation", side="left", zone="upper", hedged=True),
        Finding(kind="nodule", side="left", zone="middle"),
        Finding(kind="device", device="ett"),
        Finding(kind="device", device="cvc"),
        Finding(kind="device", device="pacemaker"),
        Finding(kind="edema", side="bilateral"),
        Finding(kind="atelectasis", side="right", zone="lower"),
    ],
    ids=lambda f: f"{f.kind}-{f.device or f.side}",
)
def test_every_finding_visible_after_downsampling(finding):
    a, b = _pair([finding], size=256)

    def down(x: np.ndarray) -> np.ndarray:  # 256 -> 128 -> 4x4 block means (32 x 32)
        small = np.asarray(Image.fromarray(x.astype(np.uint8)).resize((128, 128), Image.BILINEAR))
        return small.astype(np.float32).reshape(32, 4, 32, 4).mean(axis=(1, 3))

    assert np.abs(down(b) - down(a)).max() > 15


def test_lateral_view_and_bad_view():
    img = draw_phantom(np.random.default_rng(0), [], 64, view="lateral")
    assert img.shape == (64, 64) and img.dtype == np.uint8
    with pytest.raises(ValueError, match="view"):
        draw_phantom(np.random.default_rng(0), [], 64, view="oblique")


def _reference_display(path: Path) -> np.ndarray:
    """Display image through pydicom's own modality and VOI LUT code (an independent decoder):
    VOI output scaled from its range to 0..255, MONOCHROME1 inverted."""
    from pydicom import dcmread
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = dcmread(path)
    mv = apply_modality_lut(ds.pixel_array, ds)
    slope, icpt = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    lo_sv, hi_sv = (-(2**15), 2**15 - 1) if ds.PixelRepresentation else (0, 2**ds.BitsStored - 1)
    lo, hi = lo_sv * slope + icpt, hi_sv * slope + icpt
    if "VOILUTSequence" in ds:
        disp = apply_voi_lut(mv, ds) / 65535 * 255
    elif "WindowCenter" in ds:
        disp = (apply_voi_lut(mv, ds) - lo) / (hi - lo) * 255
    else:
        disp = (mv - lo) / (hi - lo) * 255
    return 255 - disp if ds.PhotometricInterpretation == "MONOCHROME1" else disp


def test_dicom_pixels_round_trip_to_the_phantom(tmp_path):
    out = Path(generate(SynthConfig(layout="dicom", n=8, image_size=32, seed=2), tmp_path)["path"])
    truth = [json.loads(x) for x in (out / "dicom_truth.jsonl").read_text().splitlines()]
    assert {t["variant"] for t in truth} == set(VARIANTS)
    for t in truth:
        phantom = np.asarray(Image.open(out / t["truth"]))
        display = _reference_display(out / t["path"])
        assert np.array_equal(np.round(display), phantom), t["variant"]
        if t["variant"] == "m2-u12-voilut":  # ignoring the VOI LUT gives a different image
            from pydicom import dcmread

            linear = dcmread(out / t["path"]).pixel_array / 4095 * 255
            assert np.abs(linear - phantom).max() > 20


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(layout="chexpert"),
        dict(n=0),
        dict(phi_fraction=1.5),
        dict(split_fractions=(0.5, 0.2, 0.2)),
        dict(layout="manifest", manifest_format="xml"),
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SynthConfig(**kwargs)
