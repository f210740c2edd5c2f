"""Source readers on synthetic data in every layout: counts, filters, labels, skips, errors."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from medtrain.data.config import DeidConfig
from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.sources import (
    SOURCES,
    get_source,
    iter_dicom,
    iter_manifest,
    iter_mimic_cxr,
    iter_openi,
    iter_r2gen,
)
from medtrain.data.sources.common import hash_split, pseudonym
from medtrain.data.sources.openi import mesh_labels, openi_split
from medtrain.data.text import record_text
from medtrain.synth.config import LAYOUTS, SynthConfig
from medtrain.synth.generate import generate

N = 30


def _csv(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mimic")
    generate(SynthConfig(n=N, image_size=32, lateral_fraction=0.5, seed=5), out)
    return out


@pytest.fixture(scope="module")
def openi(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("openi")
    generate(SynthConfig(layout="openi", n=N, image_size=32, seed=5), out)
    return out


def _small_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_mimic_views_filter_excludes_lateral(mimic):
    meta = _csv(mimic / "mimic-cxr-2.0.0-metadata.csv.gz")
    n_lateral = sum(r["ViewPosition"] == "LATERAL" for r in meta)
    assert n_lateral > 0
    frontal = list(iter_mimic_cxr(mimic))
    assert len(frontal) == N and all(r.view in ("PA", "AP") for r in frontal)
    assert len(list(iter_mimic_cxr(mimic, views=None))) == N + n_lateral
    assert len(list(iter_mimic_cxr(mimic, views=["lateral"]))) == n_lateral


def test_mimic_record_fields_and_splits(mimic):
    records = list(iter_mimic_cxr(mimic))
    r = records[0]
    assert r.image_path.is_absolute() and r.image_path.is_file()
    assert r.image_path.name == f"{r.id}.jpg" and r.image_path.parent.name == f"s{r.study_id}"
    assert r.report == (r.image_path.parent.parent / f"s{r.study_id}.txt").read_text()
    assert set(r.labels) == set(CHEXPERT_LABELS)
    assert {x.split for x in records} <= {"train", "validate", "test"}
    for split in ("train", "validate"):
        subset = list(iter_mimic_cxr(mimic, splits=[split]))
        assert subset and all(x.split == split for x in subset)
    assert all(record_text(x, DeidConfig()) for x in records)


def test_mimic_uncertain_and_blank_kept_distinct(mimic):
    rows = {r["study_id"]: r for r in _csv(mimic / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    values = set()
    for rec in iter_mimic_cxr(mimic):
        row = rows[rec.study_id]
        for name in CHEXPERT_LABELS:
            expected = None if row[name] == "" else float(row[name])
            assert rec.labels[name] == expected and type(rec.labels[name]) is type(expected)
            values.add(rec.labels[name])
    assert {1.0, 0.0, -1.0, None} <= values


def test_mimic_negbio_labeler_and_unknown_labeler(mimic):
    assert len(list(iter_mimic_cxr(mimic, labeler="negbio"))) == N
    with pytest.raises(DataError, match="chexpert"):
        next(iter_mimic_cxr(mimic, labeler="gpt"))


def test_mimic_missing_image_and_report_are_skipped(mimic, tmp_path):
    root = _small_copy(mimic, tmp_path / "copy")
    records = list(iter_mimic_cxr(root))
    gone_image, gone_report = records[0], records[-1]
    gone_image.image_path.unlink()
    gone_report.image_path.parent.with_suffix(".txt").unlink()  # sSTUDY/ -> sSTUDY.txt
    skipped: list[tuple[str, str]] = []
    kept = list(iter_mimic_cxr(root, skipped=skipped))
    ids = {r.id for r in kept}
    assert gone_image.id not in ids and gone_report.id not in ids
    assert len(kept) == N - 2  # one frontal image per study
    reasons = dict(skipped)
    assert "missing image" in reasons[gone_image.id]
    assert "missing report" in reasons[gone_report.id]


def test_mimic_missing_root_and_tables(tmp_path, mimic):
    with pytest.raises(DataError, match="nowhere"):
        next(iter_mimic_cxr(tmp_path / "nowhere"))
    root = tmp_path / "partial"
    root.mkdir()
    shutil.copy(mimic / "mimic-cxr-2.0.0-metadata.csv.gz", root)
    with pytest.raises(DataError, match="mimic-cxr-2.0.0-split.csv.gz"):
        next(iter_mimic_cxr(root))


def test_openi_records_labels_and_report(openi):
    records = list(iter_openi(openi))
    assert len(records) == N
    r = records[0]
    assert r.study_id == "CXR1" and r.id.startswith("CXR1_") and r.image_path.is_file()
    assert r.report.startswith("COMPARISON: ")
    assert "\nFINDINGS: " in r.report or "\nIMPRESSION: " in r.report
    assert all(record_text(x, DeidConfig()) for x in records)
    assert all(x.split == openi_split(x.study_id) for x in records)
    positives = {n for x in records for n, v in x.labels.items() if v == 1.0}
    assert "No Finding" in positives and len(positives) >= 3
    assert all(v in (1.0, None) for x in records for v in x.labels.values())
    for split in ("train", "test"):
        assert all(x.split == split for x in iter_openi(openi, splits=[split]))


def test_openi_missing_image_skipped_and_missing_root(openi, tmp_path):
    root = _small_copy(openi, tmp_path / "copy")
    first = next(iter_openi(root))
    first.image_path.unlink()
    skipped: list[tuple[str, str]] = []
    assert len(list(iter_openi(root, skipped=skipped))) == N - 1
    assert skipped[0][0] == first.id and "missing image" in skipped[0][1]
    with pytest.raises(DataError, match="nowhere"):
        next(iter_openi(tmp_path / "nowhere"))
    shutil.rmtree(root / "NLMCXR_png")
    with pytest.raises(DataError, match="NLMCXR_png"):
        next(iter_openi(root))


def test_mesh_label_mapping_and_split_stability():
    labels = mesh_labels(["Pleural Effusion/right/small", "Tubes", "normal"])
    assert labels["Pleural Effusion"] == 1.0 and labels["Support Devices"] == 1.0
    assert labels["No Finding"] is None and labels["Cardiomegaly"] is None
    assert mesh_labels(["normal", "Catheters, Indwelling"])["No Finding"] == 1.0
    assert openi_split("CXR1") == openi_split("CXR1")
    splits = [openi_split(f"CXR{i}") for i in range(1, 2001)]
    assert 0.75 < splits.count("train") / 2000 < 0.85 and "validate" in splits


def test_registry_and_unknown_source():
    assert get_source("mimic-cxr-jpg") is iter_mimic_cxr and get_source("openi") is iter_openi
    assert set(SOURCES) == {
        "mimic-cxr-jpg", "openi", "r2gen", "dicom", "manifest", "rsna-pneumonia", "vqa-rad",
        "slake",
    }  # fmt: skip
    (layout,) = [f for f in dataclasses.fields(SynthConfig) if f.name == "layout"]
    cli_layouts = layout.metadata["choices"]  # `data synth --layout` flags come from it
    assert set(SOURCES) == set(LAYOUTS) == set(cli_layouts)  # every layout has its reader
    with pytest.raises(DataError, match="mimic-cxr-jpg") as err:
        get_source("chexpert-plus")
    assert "openi" in str(err.value) and "chexpert-plus" in str(err.value)


def test_mimic_empty_report_and_truncated_jpeg(mimic, tmp_path):
    root = _small_copy(mimic, tmp_path / "copy")
    records = list(iter_mimic_cxr(root))
    empty, truncated = records[0], records[1]
    empty.image_path.parent.with_suffix(".txt").write_text(" \n")
    data = truncated.image_path.read_bytes()
    truncated.image_path.write_bytes(data[: len(data) // 3])  # readers do not decode pixels
    skipped: list[tuple[str, str]] = []
    ids = {r.id for r in iter_mimic_cxr(root, skipped=skipped)}
    assert truncated.id in ids and empty.id not in ids
    assert dict(skipped)[empty.id].startswith("empty report")


# --- R2Gen ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r2gen(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("r2gen")
    generate(SynthConfig(layout="r2gen", n=N, image_size=32, lateral_fraction=0.5, seed=5), out)
    return out


def test_r2gen_records_ids_and_splits(r2gen):
    annotation = json.loads((r2gen / "annotation.json").read_text())
    assert set(annotation) == {"train", "val", "test"}
    entries = {e["id"]: e for v in annotation.values() for e in v}
    records = list(iter_r2gen(r2gen))
    assert len(records) == sum(len(e["image_path"]) for e in entries.values()) > N
    for r in records:
        entry = entries[r.study_id]
        assert r.report == entry["report"] and r.image_path.is_file()
        assert r.split == {"val": "validate"}.get(entry["split"], entry["split"])
        k = 0 if len(entry["image_path"]) == 1 else int(r.id.rsplit("/", 1)[1])
        assert r.id == (r.study_id if len(entry["image_path"]) == 1 else f"{r.study_id}/{k}")
        assert r.image_path == (r2gen / "images" / entry["image_path"][k]).resolve()
        assert set(r.labels) == set(CHEXPERT_LABELS) and all(v is None for v in r.labels.values())
    assert {r.split for r in records} == {"train", "validate", "test"}
    assert all(r.split == "validate" for r in iter_r2gen(r2gen, splits=["val"]))
    assert all(record_text(r, DeidConfig()) for r in records)


def test_r2gen_skips_and_errors(r2gen, tmp_path):
    root = _small_copy(r2gen, tmp_path / "copy")
    annotation = json.loads((root / "annotation.json").read_text())
    train = annotation["train"]
    train[0]["report"] = "   "
    (root / "images" / train[1]["image_path"][0]).unlink()
    train[2]["image_path"] = ["../../outside.png"]
    train[3].pop("id")
    (root / "annotation.json").write_text(json.dumps(annotation))
    skipped: list[tuple[str, str]] = []
    ids = {r.study_id for r in iter_r2gen(root, skipped=skipped)}
    reasons = " | ".join(r for _, r in skipped)
    assert "empty report" in reasons and "missing image" in reasons and "leaves" in reasons
    assert "without an id" in reasons and train[0]["id"] not in ids
    (root / "annotation.json").write_text("{not json")
    with pytest.raises(DataError, match="annotation.json"):
        next(iter_r2gen(root))
    (root / "annotation.json").write_text(json.dumps({"train": [], "dev": []}))
    with pytest.raises(DataError, match="dev"):
        next(iter_r2gen(root))


# --- DICOM export ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dicom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dicom")
    generate(SynthConfig(layout="dicom", n=12, image_size=32, lateral_fraction=0.5, seed=5), out)
    return out


def test_dicom_records_pseudonyms_reports_views(dicom):
    skipped: list[tuple[str, str]] = []
    records = list(iter_dicom(dicom, skipped=skipped))
    truth = [json.loads(x) for x in (dicom / "dicom_truth.jsonl").read_text().splitlines()]
    assert len(records) == len(truth) > 12
    assert [s for s in skipped if "modality CT is not CR/DX" not in s[1]] == []
    assert len(skipped) == len(list(dicom.rglob("CT0001.dcm"))) > 0
    by_path = {r.image_path: r for r in records}
    patients = set()
    for t in truth:
        r = by_path[(dicom / t["path"]).resolve()]
        head = pydicom.dcmread(dicom / t["path"], stop_before_pixels=True)
        patients.add(head.PatientID)
        assert r.subject_id == pseudonym(head.PatientID) != head.PatientID
        assert r.study_id == pseudonym(head.StudyInstanceUID)
        assert r.id == pseudonym(head.SOPInstanceUID) and r.image_kind == "dicom"
        assert r.view == ("LATERAL" if t["view"] == "LATERAL" else head.ViewPosition)
        folder_txt = (dicom / t["path"]).parent / "report.txt"
        if folder_txt.is_file():
            assert r.report == folder_txt.read_text()
        else:
            assert head.AccessionNumber in (dicom / "reports.csv").read_text()
        assert r.split == hash_split(r.subject_id)
        assert not any(p in f"{r.id}{r.study_id}{r.subject_id}" for p in patients)
    assert {r.view for r in records} >= {"LATERAL"} and all(
        record_text(r, DeidConfig()) for r in records
    )
    assert all(r.view == "LATERAL" for r in iter_dicom(dicom, views=["LL"]))
    assert all(r.split == "test" for r in iter_dicom(dicom, splits=["test"]))


def test_dicom_bad_files_and_missing_reports(dicom, tmp_path):
    root = _small_copy(dicom, tmp_path / "copy")
    (root / "export" / "junk.dcm").write_text("not a dicom file")
    first = sorted((root / "export").glob("S00000/IM*.dcm"))[0]
    first.write_bytes(first.read_bytes()[:200])  # header cut before Modality
    with open(root / "reports.csv", newline="") as f:
        rows = list(csv.reader(f))
    gone = rows.pop(1)[0]  # first study's report row
    with open(root / "reports.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (root / "export" / "S00003" / "report.txt").write_text("\n\n")
    skipped: list[tuple[str, str]] = []
    list(iter_dicom(root, skipped=skipped))
    reasons = dict(skipped)
    assert "unreadable DICOM header" in reasons["export/junk.dcm"]
    assert "no Modality" in reasons[first.relative_to(root).as_posix()]
    assert any("no report" in r for r in reasons.values())
    assert any(k.startswith("export/S00003/") and "empty report" in r for k, r in reasons.items())
    assert gone not in " ".join(reasons.values())  # accession numbers are not logged
    with pytest.raises(DataError, match="nowhere"):
        next(iter_dicom(tmp_path / "nowhere"))


# --- manifest -------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["jsonl", "csv"])
def manifest(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"manifest-{request.param}")
    cfg = SynthConfig(
        layout="manifest", n=N, image_size=32, lateral_fraction=0.3, seed=5,
        manifest_format=request.param,
    )  # fmt: skip
    generate(cfg, out)
    return out


def test_manifest_records_labels_and_formats(manifest, tmp_path):
    records = list(iter_manifest(manifest))
    assert len(records) > N and all(r.image_path.is_file() for r in records)
    values = {v for r in records for v in r.labels.values()}
    assert {1.0, 0.0, -1.0, None} <= values and set(records[0].labels) == set(CHEXPERT_LABELS)
    assert "LATERAL" in {r.view for r in records} and {r.split for r in records} >= {"train"}
    other = "csv" if (manifest / "manifest.jsonl").is_file() else "jsonl"
    cfg = SynthConfig(layout="manifest", n=N, image_size=32, lateral_fraction=0.3, seed=5)
    cfg.manifest_format = other
    twin = list(iter_manifest(Path(generate(cfg, tmp_path / other)["path"])))
    assert [(r.id, r.report, r.labels, r.split, r.view) for r in twin] == [
        (r.id, r.report, r.labels, r.split, r.view) for r in records
    ]
    _check_ground_truth(manifest, "manifest")


def test_manifest_defaults_paths_skips_and_errors(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "imgs" / "a.png")
    jpeg = tmp_path / "imgs" / "b.jpg"
    Image.new("L", (64, 64)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:40])  # truncated: still a record, decoding is later
    outside = tmp_path.parent / f"{tmp_path.name}-abs.png"
    Image.new("L", (8, 8)).save(outside)
    rows = [
        {"image": "imgs/a.png", "report": "FINDINGS: clear.", "labels": {"Edema": -1}},
        {"image": "imgs/b.jpg", "report": "Lungs clear.", "split": "val", "subject_id": "p1"},
        {"image": str(outside), "report": "Normal.", "id": "abs"},
        {"image": "imgs/missing.png", "report": "x"},
        {"image": "imgs/a.png", "report": "  ", "id": "blank"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    skipped: list[tuple[str, str]] = []
    recs = {r.id: r for r in iter_manifest(path, skipped=skipped)}
    assert set(recs) == {"m-1", "m-2", "abs"}  # row keys: <manifest stem>-<line>
    a = recs["m-1"]
    assert a.labels == {"Edema": -1.0} and a.split == hash_split("imgs/a.png")  # by image
    assert a.image_path == (tmp_path / "imgs" / "a.png").resolve()
    assert recs["m-2"].split == "validate" and recs["abs"].image_path == outside.resolve()
    reasons = " | ".join(r for _, r in skipped)
    assert "missing image" in reasons and "empty report" in reasons and "not valid JSON" in reasons
    for bad, match in (
        ({"image": "imgs/a.png", "report": "x", "imge": 1}, "unknown keys"),
        ({"image": "imgs/a.png", "report": "x", "labels": {"Edema": 2}}, "bad label"),
        ({"image": "imgs/a.png", "report": "x", "split": "dev"}, "unknown split"),
    ):
        path.write_text(json.dumps(bad) + "\n")
        skipped = []
        assert list(iter_manifest(path, skipped=skipped)) == []  # a per-row skip, not an abort
        assert len(skipped) == 1 and match in skipped[0][1] and "m.jsonl line 1" in skipped[0][1]
    (tmp_path / "manifest.jsonl").write_text("")
    (tmp_path / "manifest.csv").write_text("image,report\n")
    with pytest.raises(DataError, match="both"):
        next(iter_manifest(tmp_path))
    (tmp_path / "manifest.jsonl").unlink()
    (tmp_path / "manifest.csv").write_text("image,text\n")
    with pytest.raises(DataError, match="report"):
        next(iter_manifest(tmp_path))


@pytest.mark.parametrize("fixture", ["mimic", "openi", "r2gen", "dicom"])
def test_phi_ground_truth_indexes_record_reports(fixture, request):
    root = request.getfixturevalue(fixture)
    _check_ground_truth(root, {"mimic": "mimic-cxr-jpg"}.get(fixture, fixture))


def _check_ground_truth(root: Path, layout: str) -> None:
    """phi_ground_truth.jsonl: report_id = Record.study_id, spans index Record.report."""
    kwargs = {"views": None} if layout == "mimic-cxr-jpg" else {}
    reports = {r.study_id: r.report for r in get_source(layout)(root, **kwargs)}
    lines = [json.loads(x) for x in (root / "phi_ground_truth.jsonl").read_text().splitlines()]
    assert {x["report_id"] for x in lines} == set(reports)
    spans = [(reports[x["report_id"]], s) for x in lines for s in x["spans"]]
    assert spans and all(0 <= s < e <= len(text) and text[s:e].strip() for text, (s, e, _) in spans)


# ------------------------------------------- MIMIC tables in the temporary SQLite database


def _gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)


_LABEL_HEADER = "subject_id,study_id," + ",".join(CHEXPERT_LABELS) + "\n"


def _tables(root: Path, meta: str, split: str, labels: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _gz(
        root / "mimic-cxr-2.0.0-metadata.csv.gz",
        "dicom_id,subject_id,study_id,ViewPosition\n" + meta,
    )
    _gz(root / "mimic-cxr-2.0.0-split.csv.gz", "dicom_id,study_id,subject_id,split\n" + split)
    _gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", labels)
    return root


def _cells(*values: str) -> str:
    return ",".join(values + ("",) * (len(CHEXPERT_LABELS) - len(values)))


def test_mimic_check_files_false_enumerates_from_tables(mimic, tmp_path):
    full = list(iter_mimic_cxr(mimic, views=None))
    lean = list(iter_mimic_cxr(mimic, views=None, check_files=False))
    assert [(r.id, r.labels, r.split, r.study_id, r.subject_id, r.view) for r in lean] == [
        (r.id, r.labels, r.split, r.study_id, r.subject_id, r.view) for r in full
    ]
    assert [r.image_path for r in lean] == [r.image_path for r in full]
    assert all(r.report == "" for r in lean)
    root = _small_copy(mimic, tmp_path / "copy")
    (root / full[0].image_path.relative_to(mimic.resolve())).unlink()  # not looked at
    skipped: list[tuple[str, str]] = []
    assert len(list(iter_mimic_cxr(root, views=None, check_files=False, skipped=skipped))) == len(
        full
    )
    assert skipped == []


def test_mimic_tables_duplicates_blanks_and_batches(tmp_path, monkeypatch):
    """What the dict tables did, across lookup batches: the last row of a repeated key wins,
    a study without labels reads all None, a split row without its split cell (or no split row)
    is skipped, blank lines are ignored, unusual numeric cells parse."""
    import medtrain.data.sources.mimic_cxr as mimic_cxr

    monkeypatch.setattr(mimic_cxr, "BATCH_ROWS", 2)
    monkeypatch.setattr(mimic_cxr, "_IN_MAX", 1)
    meta = "".join(
        f"d{i},1000000{i % 3},5{i % 4},{'PA' if i != 4 else 'LATERAL'}\n" for i in range(7)
    )
    split = "d0,50,10000000,test\nd0,50,10000000,train\n\nd1,51,10000001,validate\n"
    split += "d2,52,10000002\nd4,50,10000001,train\nd5,51,10000002,train\nd6,52,10000000,test\n"
    labels = _LABEL_HEADER + f"1,50,{_cells('1.0')}\n1,51,{_cells(' 1', '-1.0', '0.0')}\n"
    labels += f"1,50,{_cells('', '0.0')}\n\n"  # d3 (study 53) has no split entry, no labels
    root = _tables(tmp_path / "root", meta, split, labels)
    skipped: list[tuple[str, str]] = []
    records = list(iter_mimic_cxr(root, views=None, check_files=False, skipped=skipped))
    assert [(r.id, r.split, r.study_id) for r in records] == [
        ("d0", "train", "50"),
        ("d1", "validate", "51"),
        ("d4", "train", "50"),
        ("d5", "train", "51"),
        ("d6", "test", "52"),
    ]
    assert skipped[1] == ("d3", "no entry in the split table")
    assert skipped[0][0] == "d2"  # a short split row is reported with its file and line
    assert skipped[0][1].startswith("short row: 3 of 4 cells at ")
    assert skipped[0][1].endswith("mimic-cxr-2.0.0-split.csv.gz line 6")
    blank = dict.fromkeys(CHEXPERT_LABELS)
    assert records[0].labels == {**blank, "Cardiomegaly": 0.0}  # the later row of study 50
    assert records[1].labels == {**blank, "Atelectasis": 1.0, "Cardiomegaly": -1.0,
                                 "Consolidation": 0.0}  # fmt: skip
    assert records[4].labels == blank
    assert records[0].labels is not records[2].labels  # a fresh dict per record
    assert [r.id for r in iter_mimic_cxr(root, check_files=False)] == ["d0", "d1", "d5", "d6"]
    assert [r.id for r in iter_mimic_cxr(root, splits=["test"], check_files=False)] == ["d6"]


def test_mimic_label_table_bad_rows_skip_their_study(tmp_path):
    meta, split = "d0,10000000,50,PA\nd1,10000000,51,PA\n", "d0,50,1,train\nd1,51,1,train\n"
    # a bad value or a short row skips the images of that study (with the reason), not the run
    labels = _LABEL_HEADER + f"1,50,{_cells('yes')}\n1,51,{_cells('1.0')}\n1,99,{_cells('2')}\n"
    bad = _tables(tmp_path / "bad", meta, split, labels)
    skipped: list[tuple[str, str]] = []
    assert [r.id for r in iter_mimic_cxr(bad, check_files=False, skipped=skipped)] == ["d1"]
    assert len(skipped) == 1 and skipped[0][0] == "d0"
    assert skipped[0][1].startswith("bad label value 'yes' for study 50 in ")
    short = _tables(tmp_path / "short", meta, split, _LABEL_HEADER + "1,50,1.0\n")
    skipped = []
    assert [r.id for r in iter_mimic_cxr(short, check_files=False, skipped=skipped)] == ["d1"]
    assert skipped[0][0] == "d0" and skipped[0][1].startswith("short row: 3 of 16 cells at ")
    assert skipped[0][1].endswith("chexpert.csv.gz line 2")
    header = "subject_id,study_id,Atelectasis\n"
    missing = _tables(tmp_path / "missing", meta, split, header + "1,50,1.0\n")
    with pytest.raises(DataError, match="missing label columns .*Cardiomegaly"):
        next(iter_mimic_cxr(missing, check_files=False))
    no_rows = _tables(tmp_path / "no-rows", meta, split, header)  # nothing to check: no error
    assert [r.labels for r in iter_mimic_cxr(no_rows, check_files=False)] == [
        dict.fromkeys(CHEXPERT_LABELS)
    ] * 2
    no_col = _tables(tmp_path / "no-col", meta, split, _LABEL_HEADER)
    _gz(no_col / "mimic-cxr-2.0.0-split.csv.gz", "dicom,split\nd0,train\n")
    with pytest.raises(DataError, match="missing columns \\['dicom_id'\\]"):
        next(iter_mimic_cxr(no_col, check_files=False))


def test_mimic_temporary_database_outside_root_and_removed(mimic, tmp_path, monkeypatch):
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = sorted(p.name for p in mimic.iterdir())
    it = iter_mimic_cxr(mimic)
    next(it)
    (db_dir,) = temp.iterdir()
    assert db_dir.name.startswith("medtrain-mimic-") and (db_dir / "tables.sqlite").is_file()
    it.close()  # abandoned early: the database goes
    assert list(temp.iterdir()) == []
    assert len(list(iter_mimic_cxr(mimic))) == N  # exhausted: the database goes
    assert list(temp.iterdir()) == []
    with pytest.raises(DataError):
        next(iter_mimic_cxr(_tables(tmp_path / "bad", "", "", "study_id\n1\n")))
    assert list(temp.iterdir()) == []  # failed while loading: the database goes
    assert sorted(p.name for p in mimic.iterdir()) == before
