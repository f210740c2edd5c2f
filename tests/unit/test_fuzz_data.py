"""Fuzz-style checks of the readers and the shard stream (issue 9), fixed seeds, time-capped.

Mutations: random truncations, byte flips, bytes that are not UTF-8, huge and empty reports,
wrong label values, malformed rows. Invariants: nothing raises but a whole-file DataError (a
schema fault: header, top-level JSON), and every input is either in the output or in the skip
counts: the sum is checked (rows = records + skips; shard samples = yielded + skipped).
"""

import csv
import gzip
import io
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medtrain.data.config import ImageConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.data.shards.read import ShardStream
from medtrain.data.shards.write import prepare_shards
from medtrain.data.sources import open_source
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate

CAP_S = 2.0  # seconds per fuzzed target (5 targets: ~10 s in all)
ROUNDS = 40  # at most this many mutations per target


def _mutations(rng: np.random.Generator) -> list[Callable[[bytes], bytes]]:
    def truncate(b: bytes) -> bytes:
        return b[: int(rng.integers(0, len(b) + 1))]

    def flip(b: bytes) -> bytes:
        a = bytearray(b)
        for i in rng.integers(0, len(a), size=int(rng.integers(1, 8))):
            a[i] = int(rng.integers(0, 256))
        return bytes(a)

    def not_utf8(b: bytes) -> bytes:
        i = int(rng.integers(0, len(b)))
        return b[:i] + bytes([int(rng.integers(0x80, 0x100))]) + b[i:]

    def huge(b: bytes) -> bytes:
        i = b.find(b"FINDINGS")
        return b if i < 0 else b[:i] + b"FINDINGS: " + b"clear lungs " * 50_000 + b[i + 8 :]

    def empty(b: bytes) -> bytes:
        i = b.find(b"FINDINGS")
        return b if i < 0 else b[:i] + b" " + b[b.find(b"\n", i + 1) :]

    def label(b: bytes) -> bytes:
        for old in (b"-1.0", b"1.0", b'": 1', b",1,"):
            if old in b:
                return b.replace(old, old.replace(b"1", b"7"), 1)
        return b

    def row(b: bytes) -> bytes:  # drop cells of one line, or duplicate a line without its tail
        lines = b.split(b"\n")
        k = int(rng.integers(1, max(2, len(lines))))
        if k < len(lines) and lines[k]:
            lines[k] = lines[k][: int(rng.integers(0, len(lines[k])))]
        return b"\n".join(lines)

    return [truncate, flip, not_utf8, huge, empty, label, row]


def _fuzz(files: list[Path], check: Callable[[], None], seed: int) -> int:
    """Mutate one of `files` per round (restored after), call `check`; returns rounds run."""
    rng = np.random.default_rng(seed)
    muts = _mutations(rng)
    saved = {f: f.read_bytes() for f in files}
    t0, n = time.monotonic(), 0
    try:
        while n < ROUNDS and time.monotonic() - t0 < CAP_S:
            f = files[int(rng.integers(len(files)))]
            mut = muts[n % len(muts)]
            data = saved[f]
            if f.suffix == ".gz":
                f.write_bytes(gzip.compress(mut(gzip.decompress(data)), mtime=0))
            else:
                f.write_bytes(mut(data))
            try:
                check()
            except AssertionError as e:
                raise AssertionError(f"round {n} ({mut.__name__} on {f.name}): {e}") from None
            f.write_bytes(data)
            n += 1
    finally:
        for f, data in saved.items():
            f.write_bytes(data)
    return n


def _read(source: str, root: Path) -> tuple[list, list] | None:
    skipped: list[tuple[str, str]] = []
    try:
        records = list(open_source(source, root, skipped=skipped, views=()))
    except DataError:
        return None  # a whole-file schema fault, with its message: allowed, never a crash
    return records, skipped


def _synth(tmp: Path, layout: str, fmt: str = "jsonl", n: int = 10) -> Path:
    generate(SynthConfig(layout=layout, n=n, seed=9, image_size=64, manifest_format=fmt), tmp)
    return tmp


def test_fuzz_manifest_jsonl(tmp_path):
    root = _synth(tmp_path, "manifest")
    path = root / "manifest.jsonl"

    def check() -> None:
        got = _read("manifest", path)
        if got is None:
            return
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            rows = sum(1 for line in f if line.strip())
        assert len(got[0]) + len(got[1]) == rows, (len(got[0]), got[1], rows)

    assert _fuzz([path], check, seed=1) >= 7


def test_fuzz_manifest_csv(tmp_path):
    root = _synth(tmp_path, "manifest", "csv")
    path = root / "manifest.csv"

    def check() -> None:
        got = _read("manifest", path)
        if got is None:
            return
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        rows = sum(1 for r in csv.reader(io.StringIO(text, newline="")) if r) - 1  # - header
        assert len(got[0]) + len(got[1]) == rows, (len(got[0]), got[1], rows)

    assert _fuzz([path], check, seed=2) >= 7


def test_fuzz_mimic_tables_and_reports(tmp_path):
    root = _synth(tmp_path, "mimic-cxr-jpg")
    meta = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    files = [
        meta,
        root / "mimic-cxr-2.0.0-split.csv.gz",
        root / "mimic-cxr-2.0.0-chexpert.csv.gz",
        *sorted(root.glob("files/**/*.txt"))[:3],
    ]

    def check() -> None:
        got = _read("mimic-cxr-jpg", root)
        if got is None:
            return
        text = gzip.decompress(meta.read_bytes()).decode("utf-8", "surrogateescape")
        rows = sum(1 for r in csv.reader(io.StringIO(text, newline="")) if r) - 1
        # per metadata row (split / label rows without a usable key are reported on their own)
        records = [
            s for s in got[1] if not s[0].startswith(("mimic-cxr-2.0.0-s", "mimic-cxr-2.0.0-c"))
        ]
        assert len(got[0]) + len(records) == rows, (len(got[0]), got[1], rows)

    assert _fuzz(files, check, seed=3) >= 7


def test_fuzz_openi_xml(tmp_path):
    root = _synth(tmp_path, "openi")
    files = sorted((root / "ecgen-radiology").glob("*.xml"))

    def check() -> None:
        got = _read("openi", root)
        if got is None:
            return
        # one frontal image per report (synth): every XML gives a record or a skip
        assert len(got[0]) + len(got[1]) >= len(files), (len(got[0]), got[1])
        assert len({r.id for r in got[0]}) == len(got[0])

    assert _fuzz(files[:4], check, seed=4) >= 7


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    root = _synth(tmp_path_factory.mktemp("src"), "manifest", n=16)
    out = tmp_path_factory.mktemp("shards")
    cfg = ShardConfig(shard_size=4, image_size=32, window_shards=1)
    prepare_shards(source="manifest", root=root, out=out, split="all", cfg=cfg)
    return out


def _one_epoch(shard_dir: Path, verify: bool) -> tuple[list[str], dict[str, int]]:
    """Sample ids of epoch 0 from one consumer, and the skip counts the tags carried."""
    stream = ShardStream(
        shard_dir, image_size=32, image=ImageConfig(), seed=0, buffer=2, verify=verify
    )
    ids, counts = [], {"corrupt": 0, "rejected": 0, "checksum": 0}
    for sample, ((epoch, _, _), events) in stream:
        for k in counts:
            counts[k] += events[k]
        if epoch > 0:
            break
        ids.append(sample.id)
    return ids, counts


def test_fuzz_shard_stream(shard_dir, tmp_path):
    from medtrain.data.shards.read import _VERIFIED

    manifest = json.loads((shard_dir / "manifest.json").read_text())
    total = manifest["total"]["samples"]
    clean, _ = _one_epoch(shard_dir, verify=True)
    assert sorted(clean) == sorted(set(clean)) and len(clean) == total
    rng = np.random.default_rng(5)
    muts = _mutations(rng)[:3]  # truncate, flip, insert
    t0, rounds = time.monotonic(), 0
    while rounds < 12 and time.monotonic() - t0 < CAP_S:
        work = tmp_path / f"r{rounds}"
        shutil.copytree(shard_dir, work)
        entry = manifest["shards"][int(rng.integers(len(manifest["shards"])))]
        victim = work / entry["name"]
        victim.write_bytes(muts[rounds % 3](victim.read_bytes()))
        _VERIFIED.clear()
        ids, counts = _one_epoch(work, verify=True)  # the damaged shard is skipped whole
        # (the first sample of epoch 1 may carry that epoch's skip of the same shard too)
        assert len(ids) + entry["count"] == total and counts["checksum"] >= 1, (ids, counts)
        ids, counts = _one_epoch(work, verify=False)  # read as far as it goes
        assert set(ids) <= set(clean) and len(set(ids)) == len(ids)
        lost = total - len(ids)
        assert lost == 0 or counts["corrupt"] + counts["rejected"] >= 1, (lost, counts)
        rounds += 1
    assert rounds >= 3
