"""Readers meet data where users put it: MIMIC-CXR reports apart from the JPG tree, Open-I PNGs
in any of the usual folders, a manifest given as the file itself with row keys."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from medtrain.data.config import DataConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.data.pipeline import load_records
from medtrain.data.shards.manifest import QUARANTINE
from medtrain.data.shards.write import prepare_shards
from medtrain.data.sources import iter_manifest, iter_mimic_cxr, iter_openi, open_source
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate


def _view(records, root: Path) -> list[tuple]:
    """Everything a record says, with the image path relative to its data set root."""
    base = root.resolve()
    return [
        (r.id, r.report, r.labels, r.split, r.study_id, r.subject_id, r.view,
         r.image_path.relative_to(base).as_posix())
        for r in records
    ]  # fmt: skip


# ------------------------------------------------------------------------------ MIMIC-CXR-JPG


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> tuple[Path, list[tuple]]:
    """A merged MIMIC tree (reports inside files/) and what the reader yields from it."""
    root = tmp_path_factory.mktemp("merged") / "mimic-cxr-jpg"
    cfg = SynthConfig(layout="mimic-cxr-jpg", n=20, image_size=64, lateral_fraction=0.5, seed=4)
    generate(cfg, root)
    merged = _view(iter_mimic_cxr(root, views=None), root)
    assert len(merged) > 20 and all(r[1].strip() for r in merged)  # frontal + lateral, reports
    return root, merged


def _move_reports(root: Path, files: Path) -> int:
    """Move every files/pXX/pSUBJ/sSTUDY.txt of the JPG tree under `files` (same sub-path)."""
    moved = 0
    for txt in sorted((root / "files").glob("p*/p*/s*.txt")):
        dest = files / txt.relative_to(root / "files")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(txt, dest)
        moved += 1
    assert moved == 20 and not list((root / "files").rglob("*.txt"))
    return moved


def _copy(mimic, tmp_path: Path) -> Path:
    root = tmp_path / "data" / "mimic-cxr-jpg"  # siblings of the root go into tmp_path/data
    shutil.copytree(mimic[0], root)
    return root


@pytest.mark.parametrize(
    "place",
    [
        "{root}/reports/files",
        "{root}/mimic-cxr-reports/files",  # mimic-cxr-reports.zip unpacked into the root
        "{parent}/mimic-cxr-reports/files",  # ... or beside it
        "{parent}/reports/files",
    ],
)
def test_mimic_reports_found_in_each_usual_place(mimic, tmp_path, place):
    root = _copy(mimic, tmp_path)
    _move_reports(root, Path(place.format(root=root, parent=root.parent)))
    skipped: list[tuple[str, str]] = []
    assert _view(iter_mimic_cxr(root, views=None, skipped=skipped), root) == mimic[1]
    assert skipped == []
    # the same through the one entry point, with the default views filter
    frontal = [r for r in mimic[1] if r[6] in ("PA", "AP")]
    assert _view(open_source("mimic-cxr-jpg", root, views=("PA", "AP")), root) == frontal


def test_mimic_explicit_reports_root(mimic, tmp_path):
    root = _copy(mimic, tmp_path)
    archive = tmp_path / "elsewhere" / "my-reports"
    _move_reports(root, archive / "files")
    for given in (archive, archive / "files"):  # the archive folder or its files/ itself
        assert _view(iter_mimic_cxr(root, views=None, reports_root=given), root) == mimic[1]
    through = open_source("mimic-cxr-jpg", root, views=(), reports_root=str(archive))
    assert _view(through, root) == mimic[1]
    cfg = DataConfig(source="mimic-cxr-jpg", root=str(root), views=(), reports_root=str(archive))
    records, texts, _ = load_records(cfg, "train")  # the records path passes the option on
    assert [r.id for r in records] == [r[0] for r in mimic[1] if r[3] == "train"] and texts
    with pytest.raises(DataError, match="no report found"):  # not among the usual places
        next(iter_mimic_cxr(root))


def test_mimic_reports_resolved_once_merged_tree_first(mimic, tmp_path):
    """Reports in two places: the merged tree wins, and a report missing there is skipped
    rather than looked up elsewhere (one place per run, not a search per file)."""
    root = _copy(mimic, tmp_path)
    other = root / "reports" / "files"
    shutil.copytree(root / "files", other, ignore=shutil.ignore_patterns("*.jpg"))
    rel = next(iter(sorted((root / "files").glob("p*/p*/s*.txt")))).relative_to(root / "files")
    (other / rel).write_text("FINDINGS: the other copy.\n")
    (root / "files" / rel).unlink()
    skipped: list[tuple[str, str]] = []
    records = _view(iter_mimic_cxr(root, views=None, skipped=skipped), root)
    study = rel.stem[1:]
    assert [r for r in records if r[4] == study] == []
    assert records == [r for r in mimic[1] if r[4] != study]
    assert skipped and all(f"missing report {root / 'files' / rel}" in why for _, why in skipped)


def test_mimic_no_reports_anywhere_is_a_clear_error(mimic, tmp_path):
    root = _copy(mimic, tmp_path)
    for txt in (root / "files").glob("p*/p*/s*.txt"):
        txt.unlink()
    with pytest.raises(DataError) as err:
        next(iter_mimic_cxr(root))
    msg = str(err.value)
    for place in (
        root / "files",
        root / "reports" / "files",
        root / "mimic-cxr-reports" / "files",
        root.parent / "mimic-cxr-reports" / "files",
        root.parent / "reports" / "files",
    ):
        assert str(place) in msg
    assert "--reports-root" in msg and "no report found" in msg
    empty = tmp_path / "empty-reports"
    empty.mkdir()
    with pytest.raises(DataError, match="data.reports_root=.*empty-reports"):
        next(iter_mimic_cxr(root, reports_root=empty))
    # planning from the tables alone needs no reports
    assert len(list(iter_mimic_cxr(root, views=None, check_files=False))) == len(mimic[1])
    for jpg in (root / "files").rglob("*.jpg"):  # no files at all: each image is missing
        jpg.unlink()
    skipped: list[tuple[str, str]] = []
    assert list(iter_mimic_cxr(root, views=None, skipped=skipped)) == []
    assert len(skipped) == len(mimic[1]) and all("missing image" in r for _, r in skipped)


# ------------------------------------------------------------------------------------ Open-I


@pytest.fixture(scope="module")
def openi(tmp_path_factory) -> tuple[Path, list[tuple]]:
    root = tmp_path_factory.mktemp("openi")
    generate(SynthConfig(layout="openi", n=20, image_size=64, seed=4), root)
    records = list(iter_openi(root))
    assert len(records) == 20 and all(r.image_path.parent.name == "NLMCXR_png" for r in records)
    return root, _openi_view(records)


def _openi_view(records) -> list[tuple]:
    return [
        (r.id, r.report, r.labels, r.split, r.study_id, r.image_path.name, r.image_path.is_file())
        for r in records
    ]


def _move_pngs(root: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for png in (root / "NLMCXR_png").glob("*.png"):
        shutil.move(png, dest / png.name)
    (root / "NLMCXR_png").rmdir()
    return dest


@pytest.mark.parametrize("where", ["images", "."])
def test_openi_images_found_in_each_usual_place(openi, tmp_path, where):
    root = tmp_path / "openi"
    shutil.copytree(openi[0], root)
    dest = _move_pngs(root, root / where)
    records = list(iter_openi(root))
    assert _openi_view(records) == openi[1]
    assert {r.image_path.parent for r in records} == {dest.resolve()}


def test_openi_explicit_images_root_and_clear_error(openi, tmp_path):
    root = tmp_path / "openi"
    shutil.copytree(openi[0], root)
    elsewhere = _move_pngs(root, tmp_path / "pngs")
    assert _openi_view(iter_openi(root, images_root=elsewhere)) == openi[1]
    assert _openi_view(open_source("openi", root, images_root=str(elsewhere))) == openi[1]
    with pytest.raises(DataError) as err:
        next(iter_openi(root))
    msg = str(err.value)
    assert all(str(p) in msg for p in (root / "NLMCXR_png", root / "images", root))
    assert "--images-root" in msg
    with pytest.raises(DataError, match="data.images_root="):
        next(iter_openi(root, images_root=tmp_path))  # a folder without the PNGs
    with pytest.raises(DataError, match="images_root is not used by source 'r2gen'"):
        open_source("r2gen", root, images_root=str(elsewhere))


# ---------------------------------------------------------------------------------- manifest


def _manifest_dir(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir(parents=True)
    for name, value in (("a", 60), ("b", 160)):
        Image.new("L", (80, 80), value).save(tmp_path / "imgs" / f"{name}.png")
    return tmp_path


def test_manifest_file_as_root_and_rows_sharing_an_image(tmp_path):
    """No id column: rows keyed <stem>-<line>; two reports of one image are two records, in the
    reader, the records path and the shards."""
    base = _manifest_dir(tmp_path / "set")
    rows = [
        {"image": "imgs/a.png", "report": "FINDINGS: first reading. IMPRESSION: normal."},
        {"image": "imgs/a.png", "report": "FINDINGS: revised reading. IMPRESSION: effusion."},
        {"image": "imgs/b.png", "report": "FINDINGS: small nodule. IMPRESSION: nodule."},
    ]
    path = base / "revisions.jsonl"
    path.write_text("\n".join(json.dumps({**r, "split": "train"}) for r in rows) + "\n")
    records = list(iter_manifest(path))
    assert [r.id for r in records] == ["revisions-1", "revisions-2", "revisions-3"]
    assert [r.report for r in records] == [r["report"] for r in rows]
    assert records[0].image_path == records[1].image_path == (base / "imgs/a.png").resolve()
    assert records[0].study_id == records[1].study_id == "imgs/a.png"  # one image, one group
    assert [r.id for r in open_source("manifest", path)] == [r.id for r in records]

    cfg = DataConfig(source="manifest", root=str(path))  # records path, root = the file
    recs, texts, skipped = load_records(cfg, "train")
    assert [r.id for r in recs] == [r.id for r in records] and not skipped
    assert "first reading" in texts[0] and "revised reading" in texts[1]

    out = tmp_path / "shards"
    summary = prepare_shards(
        source="manifest", root=path, out=out, split="all", cfg=ShardConfig(image_size=64)
    )
    assert summary["samples"] == 3 and summary["quarantined"] == 0
    assert (out / QUARANTINE).read_text() == ""
    with tarfile.open(out / "shard-000000.tar") as tar:
        metas = [json.load(tar.extractfile(m)) for m in tar if m.name.endswith(".json")]
        txts = {m.name: tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")}
    assert sorted(m["id"] for m in metas) == [r.id for r in records]
    assert sum("revised reading" in t for t in txts.values()) == 1
    assert sum("first reading" in t for t in txts.values()) == 1


def test_manifest_id_column_keys_and_repeated_ids(tmp_path):
    base = _manifest_dir(tmp_path)
    lines = [
        "id,image,report,Edema",
        "q1,imgs/a.png,FINDINGS: one.,1",
        ',imgs/a.png,"FINDINGS: a report\nover two lines.",0',  # no id: keyed by its line
        "q1,imgs/b.png,FINDINGS: repeated id.,",
        "q2,imgs/a.png,FINDINGS: two.,-1",
    ]
    path = base / "vqa.csv"
    path.write_text("\n".join(lines) + "\n")
    skipped: list[tuple[str, str]] = []
    records = list(iter_manifest(base / "vqa.csv", skipped=skipped))
    assert [r.id for r in records] == ["q1", "vqa-3", "q2"]
    assert [r.labels["Edema"] for r in records] == [1.0, 0.0, -1.0]
    assert records[0].study_id == "q1" and records[1].study_id == "imgs/a.png"
    assert len(skipped) == 1 and skipped[0][0] == "q1" and "repeated id" in skipped[0][1]
    assert "vqa.csv line 5" in skipped[0][1]  # the row after the two-line cell
    with pytest.raises(DataError, match="manifest must be .jsonl or .csv"):
        next(iter_manifest(base / "imgs" / "a.png"))
