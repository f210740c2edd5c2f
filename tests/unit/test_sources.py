"""Source readers on synthetic data: counts, filters, label values, skips and errors."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.reports import training_text
from medtrain.data.sources import SOURCES, get_source, iter_mimic_cxr, iter_openi
from medtrain.data.sources.openi import mesh_labels, openi_split
from medtrain.data.synth import SynthConfig, generate

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
    assert all(training_text(x.report) for x in records)


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
    assert all(training_text(x.report) for x in records)
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
    assert set(SOURCES) == {"mimic-cxr-jpg", "openi"}
    with pytest.raises(DataError, match="mimic-cxr-jpg") as err:
        get_source("chexpert-plus")
    assert "openi" in str(err.value) and "chexpert-plus" in str(err.value)
