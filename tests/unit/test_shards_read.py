"""Shard reading: the split filter of the stream (exact resume and epoch completion when other
splits' samples are skipped) and of the index dataset, and the webdataset PNG decoder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from medtrain.data.config import ImageConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.data.images import decode_png, read_fitted
from medtrain.data.records import Record
from medtrain.data.shards.manifest import MANIFEST, read_manifest
from medtrain.data.shards.read import (
    ShardIndexDataset,
    ShardLoader,
    ShardStream,
    StreamState,
    merge_states,
    webdataset_png_decoder,
)
from medtrain.data.shards.write import prepare_shards

N, SIZE = 40, 16
CFG = ShardConfig(shard_size=5, image_size=SIZE, min_side=8, window_shards=2)  # 8 shards


def split_of(i: int) -> str:
    """Records 30-39 (the last shuffle window = the last two shards) hold no train sample."""
    if i >= 30:
        return "validate" if i % 2 else "test"
    return ("train", "train", "validate", "train", "test")[i % 5]


@pytest.fixture(scope="module")
def all_dir(tmp_path_factory) -> Path:
    """Shards written with --split all: train, validate and test samples mixed."""
    root = tmp_path_factory.mktemp("all")
    records = []
    for i in range(N):
        path = root / f"{i}.png"
        Image.fromarray(np.full((SIZE, SIZE), i * 6, np.uint8)).save(path)
        report = f"FINDINGS: case {i}."
        records.append(Record(id=f"s{i:02d}", image_path=path, report=report, split=split_of(i)))
    prepare_shards(source="test", root=root, out=root / "shards", split="all", cfg=CFG,
                   records=records)  # fmt: skip
    return root / "shards"


def ids(split: str) -> set[str]:
    return {f"s{i:02d}" for i in range(N) if split_of(i) == split}


def stream(shard_dir: Path, split: str | None = "train", state=None, **kw) -> ShardStream:
    kw = {"seed": 3, "buffer": 2, **kw}
    return ShardStream(shard_dir, image_size=SIZE, image=ImageConfig(), state=state, split=split,
                       **kw)  # fmt: skip


def epoch0(st: ShardStream, state: StreamState) -> list[str]:
    """The epoch-0 samples the stream still hands out, applying their tags to `state` (as the
    loader does) up to and including the first sample of epoch 1."""
    out = []
    for sample, tag in st:
        state.update([tag])
        if tag[0][0] > 0:
            return out
        out.append(sample.id)
    raise AssertionError("endless stream ended")


def test_stream_yields_only_its_split_and_closes_the_epoch(all_dir):
    manifest = read_manifest(all_dir)
    assert manifest.count("train") == len(ids("train")) == 18 and manifest.total == N
    st = stream(all_dir)
    assert st.samples_per_epoch == 18 and st.start.nonempty < len(manifest.shards)
    state = st.start.copy()
    seen = epoch0(st, state)
    assert sorted(seen) == sorted(ids("train"))  # each train sample once, nothing else
    assert state.epoch == 1 and 0 not in state.consumed  # trailing skips closed epoch 0
    val = stream(all_dir, "validate")
    assert val.samples_per_epoch == len(ids("validate"))
    assert sorted(epoch0(val, val.start.copy())) == sorted(ids("validate"))
    assert stream(all_dir, None).samples_per_epoch == N


def test_resume_at_every_position_is_exact(all_dir):
    """Stop after k samples (any k, including right after a shard's last train sample while its
    other-split tail is unread), resume: the rest of the epoch, each train sample once."""
    full = epoch0(stream(all_dir), stream(all_dir).start.copy())
    st, per_shard, tails = stream(all_dir), Counter(), 0
    state = st.start.copy()
    for (_, tag), _ in zip(st, full, strict=False):
        state.update([tag])
        shard = tag[0][1]
        per_shard[shard] += 1
        unread = state.consumed.get(0, {}).get(shard, 0) < state.counts[shard]
        tails += per_shard[shard] == state.wanted[shard] and unread
    assert tails  # the premise: stops right after a shard's last train sample, tail unread
    for k in range(len(full) + 1):
        st = stream(all_dir)
        state, it = st.start.copy(), iter(st)
        for _ in range(k):
            _, tag = next(it)
            state.update([tag])
        resumed = stream(all_dir, state=state.to_dict())
        after = resumed.start.copy()
        rest = epoch0(resumed, after)
        assert full[:k] + rest == full, k  # one consumer: the identical sequence
        assert after.epoch == 1 and 0 not in after.consumed


def test_resume_on_more_ranks_and_workers_sees_each_train_sample_once(all_dir):
    def run(world, workers, state, n_batches):
        seen, states = [], []
        for rank in range(world):
            ld = ShardLoader(
                stream(all_dir, state=state, rank=rank, world=world),
                batch_size=2,
                collate_fn=lambda samples: [s.id for s in samples],
                num_workers=workers,
            )
            it = iter(ld)
            for _ in range(n_batches):
                batch = next(it)
                seen += [(tag[0][0], i) for tag, i in zip(ld.last_tags, batch, strict=True)]
            del it
            states.append(ld.state_dict())
        return seen, merge_states(states)

    first, state = run(1, 0, None, 4)  # 8 of 18
    assert state["split"] == "train" and sum(sum(v.values()) for v in state["consumed"].values())
    rest, final = run(2, 1, state, 6)  # 2 ranks x 1 worker: 24 more, into epoch 1
    counts = Counter(i for e, i in first + rest if e == 0)
    assert set(counts) == ids("train") and max(counts.values()) == 1
    assert {i for _, i in first + rest} <= ids("train")
    assert stream(all_dir, state=final).start.epoch >= 1
    with pytest.raises(DataError, match="split 'train' but this run streams 'validate'"):
        stream(all_dir, "validate", state=final)


def test_index_dataset_filters_by_split(all_dir):
    ds = ShardIndexDataset(all_dir, image_size=SIZE, image=ImageConfig(), split="test")
    assert sorted(ds[i].id for i in range(len(ds))) == sorted(ids("test"))
    first3 = ShardIndexDataset(all_dir, image_size=SIZE, image=ImageConfig(), split="test",
                               limit=3)  # fmt: skip
    assert len(first3) == 3 and [first3[i].id for i in range(3)] == [ds[i].id for i in range(3)]
    assert len(ShardIndexDataset(all_dir, image_size=SIZE, image=ImageConfig())) == N


def test_no_sample_of_the_split_is_an_error_and_old_manifests_are_counted(all_dir, tmp_path):
    only_val = tmp_path / "val"
    val = [i for i in range(N) if split_of(i) == "validate"]
    records = []
    for i in val:
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((SIZE, SIZE), i, np.uint8)).save(path)
        records.append(Record(id=f"v{i}", image_path=path, report="FINDINGS: x.", split="validate"))
    prepare_shards(source="test", root=tmp_path, out=only_val, split="validate", cfg=CFG,
                   records=records)  # fmt: skip
    with pytest.raises(DataError, match="no sample of split 'train'.*--split validate"):
        stream(only_val)
    with pytest.raises(DataError, match="no samples of split 'train'"):
        ShardIndexDataset(only_val, image_size=SIZE, image=ImageConfig(), split="train")

    # a manifest written before per-shard split counts: counted from the json members
    old = tmp_path / "old"
    old.mkdir()
    for tar in all_dir.glob("*.tar"):
        (old / tar.name).write_bytes(tar.read_bytes())
    m = json.loads((all_dir / MANIFEST).read_text())
    for s in m["shards"]:
        del s["splits"]
    (old / MANIFEST).write_text(json.dumps(m))
    st = stream(old)
    assert st.samples_per_epoch == 18 and st.start.wanted == stream(all_dir).start.wanted
    assert sorted(epoch0(st, st.start.copy())) == sorted(ids("train"))
    m["config"]["split"] = "validate"  # ... and one written for a single split: the config
    (old / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="no sample of split 'train'"):
        stream(old)


# ------------------------------------------------------------------ webdataset PNG decoder


def test_webdataset_decoder_matches_medtrain_for_8_and_16_bit(tmp_path):
    size = 64
    yy, xx = np.mgrid[0:size, 0:size]
    wide = ((yy * size + xx) * 15 + 7).astype(np.uint16)  # 16-bit values, not multiples of 257
    images = {"deep": (wide, 16), "flat": ((wide // 257).astype(np.uint8), 8)}
    records = []
    for name, (arr, _) in images.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), arr)
        records.append(Record(id=name, image_path=tmp_path / f"{name}.png", report="FINDINGS: x."))
    out = tmp_path / "shards"
    prepare_shards(source="test", root=tmp_path, out=out, split="train",
                   cfg=ShardConfig(image_size=size), records=records)  # fmt: skip
    urls = [str(p) for p in sorted(out.glob("shard-*.tar"))]
    got = {}
    for sample in wds.WebDataset(urls, shardshuffle=False).decode(webdataset_png_decoder):
        meta = sample["json"]  # webdataset's basic handlers decode json (and txt)
        got[meta["id"]] = (sample["png"], meta["bits"])
    assert set(got) == set(images)
    identity = ImageConfig(mean=0.0, std=1.0)  # medtrain's decode without normalization
    stored = ShardIndexDataset(out, image_size=size, image=identity)
    mine = {stored[i].id: stored[i].pixel_values[0].numpy() for i in range(len(stored))}
    for name, (_, bits) in images.items():
        x, bits_read = got[name]
        assert x.dtype == np.float32 and x.shape == (size, size) and bits_read == bits
        source, _ = read_fitted(tmp_path / f"{name}.png", size, identity)
        assert np.abs(x - source).max() <= 1 / 65535  # the source's own intensities
        assert np.array_equal(x, mine[name])  # exactly what medtrain trains on
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.1  # not saturated
    deep = got["deep"][0]
    assert np.abs(deep - np.round(deep * 255) / 255).max() > 1 / 65535  # truly 16-bit values
    png = cv2.imencode(".png", wide)[1].tobytes()
    direct = webdataset_png_decoder("x.png", png)
    assert np.array_equal(direct, decode_png(png, size, identity)[0].numpy())
    assert webdataset_png_decoder("x.txt", b"text") is None
    rgb = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    assert webdataset_png_decoder("x.png", rgb) is None  # not ours: the next handler decides
    with pytest.raises(DataError, match="not a decodable PNG"):
        webdataset_png_decoder("k.png", b"\x89PNG broken")
