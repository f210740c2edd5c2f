"""Tar-shard writer: source records -> webdataset-compatible shards, in parallel, resumable.

Output directory:

    shard-000000.tar ...   members per sample: <key>.png, <key>.txt, <key>.json
    manifest.json          config, text path, per-shard name / count / splits / bytes / sha256,
                           totals (see manifest.py)
    quarantine.jsonl       rejected inputs: {"id", "path", "stage", "reason"}
    .state/                config.json + one <shard>.json per finished shard (resume bookkeeping)

<key>.png  the preprocessed image *before* contrast normalization: decoded, fitted (pad/crop) to
           image_size, 8-bit when the source has <= 8 bits (JPEG, 8-bit PNG), 16-bit for 16-bit
           PNG and DICOM. PNG at zlib level 1 (512 px radiograph): 117 kB 8-bit / 375 kB 16-bit
           against 262 / 524 kB as .npy, for ~2.3 / ~4 ms of decode per sample on one core, and
           level 6 saves only ~7% more at 5x the encode time (benchmarks/data/bench_shards.py).
           LCN and normalization stay configurable at load time.
<key>.txt  training text: `medtrain.data.text.record_text(rec, deid)`, the one text path
           (de-identification under `deid`, then sectioning and cleaning); the manifest records
           its `text_path_id`, and a re-run under another text path is refused.
<key>.json id, study_id, subject_id, view, split, labels {finding: 1/0/-1/null}, source, bits.

Records are streamed from the source reader; they are shuffled within windows of
`window_shards * shard_size` records (so a shard mixes many patients rather than one patient's
consecutive studies) and cut into shards. Memory is bounded by the window plus the in-flight
jobs. Each shard is written by a worker to `<shard>.tar.tmp-<pid>`, then renamed; a shard is done
when its `.state/<shard>.json` and tar both exist and the state's `inputs` digest (records'
fields, report text hash, image path/size/mtime, text-path hash: `inputs_digest`) matches the
records planned for it now, so a re-run skips finished shards, redoes a shard whose writer died
(its temp file is removed) and rewrites a shard whose source records changed (a fixed sample
comes back and leaves the quarantine). Writer processes die with `prepare` (PR_SET_PDEATHSIG).
Reports the readers could not use (missing files, not valid UTF-8, malformed rows with their
line) go to quarantine.jsonl with stage "reader"; the summary counts them (reader_skipped).
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import logging
import os
import re
import signal
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medtrain.data.config import DeidConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.shards.manifest import (
    ENTRY_KEYS,
    FORMAT_VERSION,
    MANIFEST,
    MEMBERS,
    QUARANTINE,
    STATE_DIR,
)
from medtrain.data.text import describe_text_path, record_text, text_path_id

if TYPE_CHECKING:
    from medtrain.data.config import ImageConfig

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
PREPARE_SPLITS = ("train", "validate", "test", "all")


@dataclass(kw_only=True, slots=True)
class ShardJob:
    index: int
    records: list[Record] = field(default_factory=list)
    inputs: str = ""  # `inputs_digest` of the records: a finished shard is reused only on a match

    @property
    def name(self) -> str:
        return shard_name(self.index)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def sample_key(record_id: str) -> str:
    """webdataset splits member names at the first dot: keys keep [A-Za-z0-9_-] only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", record_id) or "_"


# ------------------------------------------------------------------------------- planning


class QuarantineSink:
    """List-like sink for reader skips `(id, reason)`, streamed to a JSONL file (bounded memory).

    Readers call `skipped.append((id, reason))`; a list would grow with every skipped record.
    """

    def __init__(self, path: Path | None) -> None:
        self.count = 0
        self._f = None
        if path is not None:
            self.open(path)

    def open(self, path: Path) -> None:
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115

    def append(self, item: tuple[str, str]) -> None:
        self.count += 1
        if self._f is not None:
            rec_id, reason = item
            self._f.write(json.dumps(quarantine_entry(rec_id, "", "reader", reason)) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def quarantine_entry(rec_id: str, path: str, stage: str, reason: str) -> dict[str, str]:
    return {"id": rec_id, "path": path, "stage": stage, "reason": reason}


def plan_shards(records: Iterable[Record], cfg: ShardConfig) -> Iterator[ShardJob]:
    """Cut a record stream into ShardJobs, shuffling within windows (deterministic in cfg.seed).

    Holds at most `window_shards * shard_size` records.
    """
    window_len = cfg.window_shards * cfg.shard_size
    index, window_no, window = 0, 0, []

    def flush() -> Iterator[ShardJob]:
        nonlocal index
        order = np.random.default_rng([cfg.seed, window_no]).permutation(len(window))
        mixed = [window[i] for i in order]
        for start in range(0, len(mixed), cfg.shard_size):
            yield ShardJob(index=index, records=mixed[start : start + cfg.shard_size])
            index += 1

    for rec in records:
        window.append(rec)
        if len(window) == window_len:
            yield from flush()
            window, window_no = [], window_no + 1
    if window:
        yield from flush()


def source_records(
    source: str, root: Path, split: str, skipped: QuarantineSink, **options: Any
) -> Iterator[Record]:
    """Stream the source reader's records of `split` ("all": every split); `options` are the
    reader options of `medtrain.data.sources.open_source` (views, reports_root, images_root)."""
    from medtrain.data.sources import open_source

    root = Path(root)
    if not root.exists():  # a folder, or for some readers (manifest) the file itself
        raise DataError(f"source root {root} does not exist")
    splits = None if split == "all" else [split]
    return open_source(source, root, splits=splits, skipped=skipped, **options)


def inputs_digest(records: Iterable[Record], text_path: dict[str, Any]) -> str:
    """What a shard was written from: every record's fields, the sha256 of its report text, its
    image path, size and mtime, plus the text path's hash. A re-run reuses a finished shard only
    when this matches, so a source record that was fixed (or changed) is written again and
    leaves the quarantine. Costs one stat per record, no image read."""
    h = hashlib.sha256(str(text_path.get("hash", "")).encode())
    for rec in records:
        try:
            st = rec.image_path.stat()
            image = [str(rec.image_path), st.st_size, st.st_mtime_ns]
        except OSError:
            image = [str(rec.image_path), -1, -1]
        report = (
            None
            if rec.report is None
            else hashlib.sha256(rec.report.encode("utf-8", "surrogatepass")).hexdigest()
        )
        fields = [rec.id, rec.split, rec.study_id, rec.subject_id, rec.view, rec.image_kind]
        labels = sorted(rec.labels.items())
        h.update(json.dumps([fields, labels, report, image]).encode("utf-8"))
    return h.hexdigest()


def _die_with_parent(parent: int) -> None:
    """Pool initializer: the writer process is killed when `prepare` dies (even by SIGKILL),
    never left running on its own. Linux: prctl(PR_SET_PDEATHSIG, SIGKILL); elsewhere a no-op
    beyond the check that the parent is still there."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: keep the portable behaviour
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


# --------------------------------------------------------------------------------- writing


class _HashingWriter(io.RawIOBase):
    """File wrapper that counts and sha256-hashes what tarfile writes."""

    def __init__(self, f) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.n += len(b)
        return self.f.write(b)

    def tell(self) -> int:
        return self.n


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444  # reproducible bytes
    tar.addfile(info, io.BytesIO(data))


def _sample(rec: Record, cfg: ShardConfig, icfg: ImageConfig, source: str, deid: DeidConfig):
    """-> (key, {ext: bytes}) or raises DataError with the stage in `args[1]`."""
    from medtrain.data.images import encode_png, read_fitted

    try:
        text = record_text(rec, deid)
    except DataError as e:
        raise DataError(str(e), "report") from None
    try:
        x, bits = read_fitted(rec.image_path, cfg.image_size, icfg, rec.image_kind)
    except DataError as e:
        raise DataError(str(e), "image") from None
    meta = {
        "id": rec.id,
        "study_id": rec.study_id,
        "subject_id": rec.subject_id,
        "view": rec.view,
        "split": rec.split,
        "labels": rec.labels,
        "source": source,
        "bits": 8 if bits <= 8 else 16,
    }
    return sample_key(rec.id), {
        "png": encode_png(x, bits, cfg.png_level),
        "txt": text.encode("utf-8"),
        "json": json.dumps(meta, sort_keys=True).encode("utf-8"),
    }


def write_shard(
    job: ShardJob, out: str, cfg: ShardConfig, source: str, deid: DeidConfig
) -> dict[str, Any]:
    """Write one shard atomically (temp file + rename); returns its manifest entry + quarantine.

    Runs in a worker process: everything it needs comes in the arguments.
    """
    import cv2

    cv2.setNumThreads(1)
    out_dir = Path(out)
    final = out_dir / job.name
    tmp = out_dir / f"{job.name}.tmp-{os.getpid()}"
    icfg = cfg.image_config()
    quarantine, keys, splits, t0 = [], set(), Counter(), time.perf_counter()
    with open(tmp, "wb") as f:
        hw = _HashingWriter(f)
        with tarfile.open(fileobj=hw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rec in job.records:
                try:
                    key, members = _sample(rec, cfg, icfg, source, deid)
                except DataError as e:
                    stage = e.args[1] if len(e.args) > 1 else "sample"
                    path = str(rec.image_path)
                    quarantine.append(quarantine_entry(rec.id, path, stage, e.args[0]))
                    continue
                if key in keys:
                    reason = f"duplicate sample key {key!r} in {job.name}"
                    quarantine.append(quarantine_entry(rec.id, str(rec.image_path), "key", reason))
                    continue
                keys.add(key)
                splits[rec.split] += 1
                for ext, data in members.items():
                    _add(tar, f"{key}.{ext}", data)
        f.flush()
        os.fsync(f.fileno())
    entry = {
        "name": job.name,
        "count": len(keys),
        "splits": dict(sorted(splits.items())),
        "bytes": hw.n,
        "sha256": hw.sha.hexdigest(),
    }
    state = {
        **entry,
        "inputs": job.inputs,
        "quarantine": quarantine,
        "seconds": time.perf_counter() - t0,
    }
    _write_json_atomic(out_dir / STATE_DIR / f"{job.name}.json", state)
    os.replace(tmp, final)  # the tar appears last: tar present => its state file is too
    return state


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _finished(out: Path, name: str, inputs: str) -> dict[str, Any] | None:
    """The state of shard `name` when it is finished and was written from `inputs` (see
    inputs_digest; states without one predate it and are written again), else None."""
    state = out / STATE_DIR / f"{name}.json"
    tar = out / name
    if not (state.is_file() and tar.is_file()):
        return None
    try:
        entry = json.loads(state.read_text())
    except ValueError:
        return None  # a damaged state file: write the shard again
    if entry.get("inputs") != inputs:
        log.info("%s: its source records changed since it was written; writing it again", name)
        return None
    return entry if tar.stat().st_size == entry.get("bytes") else None


def _check_config(out: Path, identity: dict[str, Any]) -> None:
    """Record the writing identity in a new `out`; refuse an `out` written under another one."""
    path = out / STATE_DIR / "config.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before.get("text_path") != identity["text_path"]:
            raise DataError(
                f"{out} holds shards written under another text path "
                f"({describe_text_path(before.get('text_path', {}))}; this run: "
                f"{describe_text_path(identity['text_path'])}): the de-identification rules, "
                "the sectioning or data.deid differ. Use a new output directory"
            )
        if before != identity:
            diff = {k: (before.get(k), v) for k, v in identity.items() if before.get(k) != v}
            raise DataError(
                f"{out} was prepared with a different configuration {diff} (before, now); "
                "use a new output directory or the same options"
            )
    else:
        _write_json_atomic(path, identity)


# ---------------------------------------------------------------------------------- prepare


def prepare_shards(
    *,
    source: str,
    root: str | Path,
    out: str | Path,
    split: str = "train",
    cfg: ShardConfig | None = None,
    dry_run: bool = False,
    records: Iterable[Record] | None = None,
    deid: DeidConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Write (or finish writing) the shards of `split` of `source` under `out`.

    Texts go through the one text path under `deid` (default DeidConfig(): rules, all kinds).
    `options` are reader options passed to `open_source` (views, reports_root, images_root).
    Returns a summary. `dry_run` enumerates and plans only (no images are read). `records`
    replaces the source reader (benchmarks, tests).
    """
    cfg = cfg or ShardConfig()
    deid = deid if deid is not None else DeidConfig()
    if split not in PREPARE_SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(PREPARE_SPLITS)}")
    out = Path(out)
    text_path = text_path_id(deid)
    identity = {
        "format": FORMAT_VERSION,
        "source": source,
        "split": split,
        **cfg.identity(),
        "reader": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())},
        "text_path": text_path,
    }
    t0 = time.perf_counter()
    sink = QuarantineSink(None)
    stream = (
        records
        if records is not None
        else source_records(source, Path(root), split, sink, **options)
    )
    if not dry_run:  # after the source name and root were checked
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
        _check_config(out, identity)
        for stale in out.glob("shard-*.tar.tmp-*"):  # a writer that died mid-shard
            stale.unlink()
        sink.open(out / f"{QUARANTINE}.tmp")
    entries: dict[int, dict[str, Any]] = {}
    counts = {"planned": 0, "skipped_done": 0, "written": 0, "records": 0}

    def finish(result: dict[str, Any], index: int) -> None:
        entries[index] = {k: result[k] for k in ENTRY_KEYS}
        counts["written"] += 1

    pool = (
        ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=get_context("spawn"),
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )
        if cfg.workers > 1 and not dry_run
        else None
    )
    pending: dict[Future, int] = {}
    try:
        for job in plan_shards(stream, cfg):
            counts["planned"] += 1
            counts["records"] += len(job.records)
            if dry_run:
                continue
            job.inputs = inputs_digest(job.records, text_path)
            done = _finished(out, job.name, job.inputs)
            if done is not None:
                entries[job.index] = {k: done[k] for k in ENTRY_KEYS}
                counts["skipped_done"] += 1
                continue
            if pool is None:
                finish(write_shard(job, str(out), cfg, source, deid), job.index)
                continue
            pending[pool.submit(write_shard, job, str(out), cfg, source, deid)] = job.index
            if len(pending) >= 2 * cfg.workers:  # bounded in-flight jobs
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in ready:
                    finish(fut.result(), pending.pop(fut))
        for fut in list(pending):
            finish(fut.result(), pending.pop(fut))
    finally:
        sink.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    summary = {
        "out": str(out),
        **counts,
        "reader_skipped": sink.count,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if dry_run:
        return summary
    shards = [entries[i] for i in sorted(entries)]
    n_quarantined = _write_quarantine(out, [e["name"] for e in shards])
    manifest = {
        "format": FORMAT_VERSION,
        "config": identity,
        "text_path": text_path,
        "members": MEMBERS,
        "root": str(root),
        "shards": shards,
        "total": {
            "samples": sum(e["count"] for e in shards),
            "bytes": sum(e["bytes"] for e in shards),
            "shards": len(shards),
            "quarantined": n_quarantined,
            "splits": dict(sorted(sum((Counter(e["splits"]) for e in shards), Counter()).items())),
        },
    }
    _write_json_atomic(out / MANIFEST, manifest)
    return {**summary, **manifest["total"]}


def _write_quarantine(out: Path, names: list[str]) -> int:
    """quarantine.jsonl = this run's reader skips + every shard's rejected samples."""
    tmp = out / f"{QUARANTINE}.tmp"
    n = sum(1 for _ in tmp.open(encoding="utf-8"))
    with tmp.open("a", encoding="utf-8") as f:
        for name in names:
            for q in json.loads((out / STATE_DIR / f"{name}.json").read_text())["quarantine"]:
                f.write(json.dumps(q) + "\n")
                n += 1
    os.replace(tmp, out / QUARANTINE)
    return n
