import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from medtrain.data.config import DeidConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.data.images import ImageConfig
from medtrain.data.records import Record
from medtrain.data.shards.manifest import (
    MANIFEST,
    QUARANTINE,
    STATE_DIR,
    read_manifest,
    verify_shards,
)
from medtrain.data.shards.read import ShardIndexDataset, ShardStream
from medtrain.data.shards.write import plan_shards, prepare_shards
from medtrain.data.text import text_path_id
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate

CFG = ShardConfig(shard_size=4, image_size=64, window_shards=2)


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mimic")
    generate(SynthConfig(layout="mimic-cxr-jpg", n=24, seed=11, image_size=128), out)
    return out


@pytest.fixture(scope="module")
def shards(mimic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    prepare_shards(source="mimic-cxr-jpg", root=mimic, out=out, split="all", cfg=CFG)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stream_ids(shard_dir: Path, n: int) -> tuple[list[str], ShardStream]:
    stream = ShardStream(shard_dir, image_size=64, image=ImageConfig(), seed=0, buffer=3)
    it = iter(stream)
    return [next(it)[0].id for _ in range(n)], stream  # the stream yields (Sample, tag)


def test_manifest_checksums_and_webdataset_layout(shards):
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["total"]["samples"] == sum(s["count"] for s in manifest["shards"]) > 0
    for s in manifest["shards"]:
        path = shards / s["name"]
        assert sha256(path) == s["sha256"] and path.stat().st_size == s["bytes"]
    assert verify_shards(shards) == []
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(names[2]).read())
    assert [n.split(".", 1)[1] for n in names[:3]] == ["png", "txt", "json"]
    assert len({n.split(".", 1)[0] for n in names}) == len(names) // 3  # one key per sample
    assert set(meta) >= {"id", "study_id", "subject_id", "split", "labels", "bits"}
    import webdataset as wds

    keys = [
        s["__key__"] for s in wds.WebDataset(str(shards / "shard-000000.tar"), shardshuffle=False)
    ]
    assert keys == [n.split(".", 1)[0] for n in names[::3]]


def test_rerun_is_a_noop(mimic, shards):
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")}
    summary = prepare_shards(source="mimic-cxr-jpg", root=mimic, out=shards, split="all", cfg=CFG)
    assert summary["written"] == 0 and summary["skipped_done"] == summary["planned"] == len(before)
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")} == before
    with pytest.raises(DataError, match="different configuration"):
        prepare_shards(
            source="mimic-cxr-jpg",
            root=mimic,
            out=shards,
            split="all",
            cfg=ShardConfig(shard_size=5, image_size=64, window_shards=2),
        )


def test_manifest_records_text_path_and_splits(shards):
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["text_path"] == text_path_id(DeidConfig())
    assert manifest["config"]["text_path"] == manifest["text_path"]
    assert "16-bit" in manifest["members"]["png"]  # the convention, for non-medtrain readers
    assert "webdataset_png_decoder" in manifest["members"]["png"]
    written: dict[str, dict[str, int]] = {}
    for name in [s["name"] for s in manifest["shards"]]:
        with tarfile.open(shards / name) as tar:
            metas = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith("json")]
        for meta in metas:
            written.setdefault(name, {}).setdefault(meta["split"], 0)
            written[name][meta["split"]] += 1
    assert {s["name"]: s["splits"] for s in manifest["shards"]} == written
    m = read_manifest(shards)
    assert m.text_path == manifest["text_path"]
    by_split = {sp: sum(w.get(sp, 0) for w in written.values()) for sp in ("train", "test")}
    assert m.count("train") == by_split["train"] > 0 and m.count("test") == by_split["test"]
    assert m.count() == m.total == manifest["total"]["samples"]
    assert sum(manifest["total"]["splits"].values()) == m.total


def test_old_manifest_without_splits_still_loads(shards, tmp_path):
    m = json.loads((shards / MANIFEST).read_text())
    for s in m["shards"]:
        del s["splits"]
    del m["text_path"]
    (tmp_path / MANIFEST).write_text(json.dumps({**m, "config": {"split": "train"}}))
    old = read_manifest(tmp_path)
    assert old.text_path == {} and old.count("train") == old.total > 0
    assert old.count("test") == 0
    (tmp_path / MANIFEST).write_text(json.dumps({**m, "config": {"split": "all"}}))
    with pytest.raises(DataError, match="per-split counts"):
        read_manifest(tmp_path).count("train")


def test_prepare_refuses_another_text_path(mimic, shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(shards, out)
    with pytest.raises(DataError, match="another text path.*de-identification off"):
        prepare_shards(
            source="mimic-cxr-jpg",
            root=mimic,
            out=out,
            split="all",
            cfg=CFG,
            deid=DeidConfig(enabled=False),
        )
    with pytest.raises(DataError, match="another text path"):
        prepare_shards(
            source="mimic-cxr-jpg", root=mimic, out=out, split="all", cfg=CFG,
            deid=DeidConfig(kinds=("NAME",)),
        )  # fmt: skip
    state = json.loads((out / STATE_DIR / "config.json").read_text())
    del state["text_path"]  # written before text paths were recorded
    (out / STATE_DIR / "config.json").write_text(json.dumps(state))
    with pytest.raises(DataError, match="unrecorded"):
        prepare_shards(source="mimic-cxr-jpg", root=mimic, out=out, split="all", cfg=CFG)


def test_prepare_passes_reader_options(mimic, tmp_path):
    with pytest.raises(DataError, match="images_root"):  # an Open-I option, refused by MIMIC
        prepare_shards(source="mimic-cxr-jpg", root=mimic, out=tmp_path, cfg=CFG, images_root="png")
    summary = prepare_shards(
        source="mimic-cxr-jpg", root=mimic, out=tmp_path / "ap", cfg=CFG, views=("AP",)
    )
    from medtrain.data.sources import open_source

    views = [json.loads(r["json"])["view"] for r in _raw_samples(tmp_path / "ap")]
    expected = [r.view for r in open_source("mimic-cxr-jpg", mimic, splits=["train"], skipped=[])]
    assert views == ["AP"] * expected.count("AP") and 0 < summary["samples"] < len(expected)


def test_shard_killed_mid_write_is_redone_identically(mimic, shards, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(shards, out)
    name = "shard-000001.tar"
    original = sha256(out / name)
    (out / name).unlink()  # the writer died before the rename: only a temp file is left
    (out / STATE_DIR / f"{name}.json").unlink()
    (out / f"{name}.tmp-4242").write_bytes(b"partial tar bytes")
    summary = prepare_shards(source="mimic-cxr-jpg", root=mimic, out=out, split="all", cfg=CFG)
    assert summary["written"] == 1 and summary["skipped_done"] == summary["planned"] - 1
    assert not list(out.glob("*.tmp-*"))
    assert sha256(out / name) == original  # deterministic bytes
    assert verify_shards(out) == []


def test_parallel_workers_write_the_same_shards(mimic, shards, tmp_path):
    cfg = ShardConfig(shard_size=4, image_size=64, window_shards=2, workers=2)
    prepare_shards(source="mimic-cxr-jpg", root=mimic, out=tmp_path, split="all", cfg=cfg)
    assert read_manifest(tmp_path).shards == read_manifest(shards).shards


def test_quarantine_truncated_jpeg_and_empty_report(tmp_path):
    root = tmp_path / "src"
    generate(SynthConfig(layout="mimic-cxr-jpg", n=8, seed=2, image_size=96), root)
    jpgs = sorted(root.glob("files/*/*/*/*.jpg"))
    bad_jpg = jpgs[0]
    bad_jpg.write_bytes(bad_jpg.read_bytes()[:300])
    victim = jpgs[3]
    victim.parent.with_suffix(".txt").write_text("  \n")
    summary = prepare_shards(
        source="mimic-cxr-jpg",
        root=root,
        out=tmp_path / "out",
        split="all",
        cfg=ShardConfig(shard_size=3, image_size=64),
    )
    rows = [json.loads(x) for x in (tmp_path / "out" / QUARANTINE).read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert by_id[bad_jpg.stem]["stage"] == "image" and bad_jpg.name in by_id[bad_jpg.stem]["path"]
    assert "unreadable or corrupt" in by_id[bad_jpg.stem]["reason"]
    assert "empty" in by_id[victim.stem]["reason"]
    # The reader may reject the empty report itself (stage "reader") or the writer does.
    assert summary["samples"] == 8 - 2 and summary["quarantined"] == 2
    assert set(stream_ids(tmp_path / "out", summary["samples"])[0]).isdisjoint(by_id)


def test_enumeration_is_streamed_window_by_window():
    pulled = 0

    def records():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield Record(id=f"r{i}", image_path=Path(f"/x/{i}.png"), report="FINDINGS: ok.")

    cfg = ShardConfig(shard_size=10, window_shards=3)
    jobs = plan_shards(records(), cfg)
    first = next(jobs)
    assert pulled == 30 and len(first.records) == 10  # one window held, not the stream
    rest = list(jobs)
    ids = [r.id for j in [first, *rest] for r in j.records]
    assert sorted(ids) == sorted(f"r{i}" for i in range(10_000))
    window0 = [f"r{i}" for i in range(30)]
    assert sorted(ids[:30]) == sorted(window0) and ids[:30] != window0  # shuffled in its window
    assert [j.index for j in [first, *rest]] == list(range(1000))


# ------------------------------------------------------------------- hostile shard contents


def _member(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.type = (len(data) if kind == tarfile.REGTYPE else 0), kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _rewrite_manifest(shard_dir: Path, name: str, count: int) -> None:
    m = json.loads((shard_dir / MANIFEST).read_text())
    m["shards"] = [
        {
            "name": name,
            "count": count,
            "bytes": (shard_dir / name).stat().st_size,
            "sha256": sha256(shard_dir / name),
        }
    ]
    (shard_dir / MANIFEST).write_text(json.dumps(m))


def good_samples(shards: Path, n: int) -> list[tuple[str, bytes]]:
    with tarfile.open(shards / "shard-000000.tar") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()[: 3 * n]]


def test_unsafe_member_names_rejected_never_fatal(shards, tmp_path):
    out = tmp_path / "evil"
    out.mkdir()
    shutil.copy(shards / MANIFEST, out / MANIFEST)
    png = good_samples(shards, 1)[0][1]
    with tarfile.open(out / "evil.tar", "w") as tar:
        for name, data in good_samples(shards, 2)[:3]:
            _member(tar, name, data)
        _member(tar, "/abs/evil.png", png)
        _member(tar, "../up.txt", b"escape")
        _member(tar, "ok/../../x.json", b"{}")
        _member(tar, "link.png", b"", tarfile.SYMTYPE)
        for name, data in good_samples(shards, 2)[3:]:
            _member(tar, name, data)
    _rewrite_manifest(out, "evil.tar", 2)
    ids, stream = stream_ids(out, 2)
    assert len(set(ids)) == 2
    it = iter(stream)
    tags = [next(it)[1][1] for _ in range(2)]  # events of epoch 0 (the next epoch re-reads the tar)
    assert sum(t["rejected"] for t in tags) == 4 and sum(t["corrupt"] for t in tags) == 0
    assert len(ShardIndexDataset(out, image_size=64, image=ImageConfig())) == 2


def test_corrupt_members_and_truncated_tar_are_skipped_and_counted(shards, tmp_path):
    out = tmp_path / "bad"
    out.mkdir()
    shutil.copy(shards / MANIFEST, out / MANIFEST)
    members = good_samples(shards, 4)
    with tarfile.open(out / "bad.tar", "w") as tar:
        for i, (name, data) in enumerate(members):
            if i == 0:
                data = b"\x89PNG garbage"  # sample 0: undecodable image
            if i == 5:
                continue  # sample 1: no .json member
            if i == 8:
                data = b"not json"  # sample 2: bad metadata
            _member(tar, name, data)
    _rewrite_manifest(out, "bad.tar", 4)
    stream = ShardStream(out, image_size=64, image=ImageConfig(), seed=0, buffer=1)  # in order
    it = iter(stream)
    (first, (_, events1)), (second, (_, events2)) = next(it), next(it)  # one good per epoch
    assert first.id == second.id == json.loads(members[11][1])["id"]
    assert events1["corrupt"] == 3 and events2["closed"] == [(0, 0)]

    data = (out / "bad.tar").read_bytes()
    (out / "bad.tar").write_bytes(data[: len(data) // 2])  # truncated mid-member
    stream = ShardStream(out, image_size=64, image=ImageConfig(), seed=0, buffer=8)
    with pytest.raises(DataError, match="no readable sample"):
        next(iter(stream))  # every sample unreadable: a clear error, not a hang


def test_stream_rejects_too_few_shards_for_consumers(shards):
    n = len(read_manifest(shards).shards)
    stream = ShardStream(shards, image_size=64, image=ImageConfig(), seed=0, rank=0, world=n + 1)
    with pytest.raises(DataError, match="cannot feed"):
        next(iter(stream))


def test_prepare_cli_and_dry_run(mimic, tmp_path, capsys):
    from medtrain.cli import main

    args = [
        "data",
        "prepare",
        "--source",
        "mimic-cxr-jpg",
        "--root",
        str(mimic),
        "--split",
        "train",
        "--shard-size",
        "5",
        "--image-size",
        "48",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["written"] == 0 and not list(tmp_path.glob("*.tar"))
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == dry["records"] and summary["planned"] == dry["planned"]
    splits = {json.loads(r["json"])["split"] for r in _raw_samples(tmp_path)}
    assert splits == {"train"}
    img = np.frombuffer(_raw_samples(tmp_path)[0]["png"], np.uint8)
    assert img[:4].tobytes() == b"\x89PNG"


def _raw_samples(shard_dir: Path) -> list[dict]:
    from medtrain.data.shards.read import iter_tar_samples

    stats = {"corrupt": 0, "rejected": 0}
    return [s for p in sorted(shard_dir.glob("*.tar")) for s in iter_tar_samples(p, stats)]


def test_stream_state_closes_epochs_with_empty_shards():
    from medtrain.data.shards.manifest import Manifest
    from medtrain.data.shards.read import StreamState

    shards = [
        {"name": f"s{i}.tar", "count": c, "bytes": 1, "sha256": "x"}
        for i, c in enumerate([3, 0, 2])
    ]
    st = StreamState(Manifest(root=Path("."), shards=shards, config={}), seed=0, buffer=4)
    assert [s for s, _ in st.remaining(0)] == [s for s in st.order(0) if s != 1]
    st.update([((0, 0, 2), {}), ((0, 2, 0), {})])
    assert st.epoch == 0 and st.remaining(0) == [(2, 1)]
    st.update([((1, 0, 0), {"closed": [(0, 2)]})])  # shard 2 finished with a corrupt tail
    assert st.epoch == 1 and st.consumed == {1: {0: 1}}
    manifest = Manifest(root=Path("."), shards=shards, config={})
    again = StreamState(manifest, seed=0, buffer=4).load(st.to_dict())
    assert again.epoch == 1 and dict(again.remaining(1))[0] == 1
