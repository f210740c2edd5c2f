"""Resumable streaming loader over tar shards, split across ranks and dataloader workers.

Order (a function of seed, epoch and the shard set only):
  * epoch e visits the shards in the permutation rng(seed, e);
  * a shard's samples come out of a buffer shuffle (`buffer` samples) seeded by
    (seed, e, shard), reading the tar sequentially; position p = p-th sample emitted.

Consumers: there are C = world_size x max(1, num_workers); consumer c = rank * K + worker
takes every C-th shard of the epoch's list of not-yet-finished shards. Every consumer streams
endlessly (epoch e, then e + 1, ...), so no rank runs dry at an epoch end, nothing is dropped
and no batch is padded: epochs overlap by at most one shard per consumer.

State (goes into the checkpoint; world-size independent): for each epoch not yet complete, how
many samples of each shard have been handed to training, always a prefix of that shard's
order. The main process updates it from the (epoch, shard, position) tags of the batches it
actually receives, so prefetched batches are not counted. On resume with any number of ranks
and workers, each shard continues at its offset (earlier positions are re-read but not decoded):
the samples of every epoch are seen exactly once.

Data split (`split`, None: all): shards written with `--split all` hold train, validate and test
samples; the stream hands out only those of `split`, read from each sample's json member before
its PNG is decoded. Positions still count every sample of the shard order: a skipped sample is
simply never handed out, and the shard's "closed" event completes it, so skipped trailing
samples break neither resume nor epoch completion. Shards without a sample of the split (per
the manifest's per-shard "splits" counts) are not planned at all; a stream over shards without
any sample of its split is a DataError.

Stored images (what other readers must know): `<key>.png` is a single-channel PNG, 8-bit when
the json's "bits" is 8 (value / 255 = intensity in [0, 1]) and 16-bit when it is 16 (value /
65535; DICOM and 16-bit sources). Stock `webdataset` image decoders assume 8 bits and turn
16-bit PNGs all white: decode with `.decode(webdataset_png_decoder)` instead, which returns the
(S, S) float32 intensity in [0, 1] for both depths, the same values medtrain itself trains on.

Bad data is never fatal: corrupt members (undecodable PNG/JSON, missing parts) and unreadable
tail of a truncated tar are skipped and counted ("corrupt"; a tar cut cleanly at a member
boundary counts the samples the manifest says are missing); members with absolute or `..` paths
or that are not regular files are rejected ("rejected") without being read. With `verify`
(data.verify_shards) a shard's size and sha256 are checked against the manifest the first time
a process opens it; a mismatching shard is skipped whole, logged once naming the file, and
counted ("checksum"), never trained on. The same holds for `ShardIndexDataset` (evaluation).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from medtrain.data.config import ImageConfig
from medtrain.data.errors import DataError
from medtrain.data.images import decode_png
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Sample
from medtrain.data.shards.manifest import Manifest, read_manifest, shard_fault

log = logging.getLogger(__name__)
STATE_VERSION = 1
_COUNTERS = ("samples", "corrupt", "rejected", "checksum")
_EVENTS = ("corrupt", "rejected", "checksum")  # per-consumer counts carried by batch tags
_VERIFIED: dict[tuple[str, str], str | None] = {}  # (path, sha256) -> fault; once per process


def checked_shard(root: Path, entry: dict[str, Any]) -> str | None:
    """Why shard `entry` must not be read (size / sha256 differ from the manifest), or None.
    Verified once per process (the first open); a mismatch is logged once, naming the file."""
    path = Path(root) / entry["name"]
    key = (str(path), str(entry.get("sha256")))
    if key not in _VERIFIED:
        fault = shard_fault(root, entry)
        _VERIFIED[key] = fault
        if fault is not None:
            log.warning(
                "%s: %s; shard skipped, not trained or evaluated on (data.verify_shards; "
                "`medtrain data verify --shards %s`)",
                path,
                fault,
                root,
            )
    return _VERIFIED[key]


# ------------------------------------------------------------------------------ tar reading


def unsafe_member(info: tarfile.TarInfo) -> str | None:
    """Why a member must not be read, or None. Absolute / `..` / non-regular members."""
    name = info.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute member path {name!r}"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return f"member path with '..' {name!r}"
    if not info.isreg():
        return f"member {name!r} is not a regular file"
    return None


def iter_tar_samples(path: Path, stats: dict[str, int]) -> Iterator[dict[str, Any]]:
    """Sequential read of a webdataset tar -> {"__key__", ext: bytes, ...} per sample.

    Members group by key (name up to the first dot of the base name) while consecutive. Rejected
    members increment stats["rejected"]; a read error ends the shard and increments
    stats["corrupt"] (what was read before it is still yielded).
    """
    sample: dict[str, Any] = {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                why = unsafe_member(info)
                if why is not None:
                    if not info.isdir():
                        stats["rejected"] += 1
                        log.warning("%s: rejected %s", path, why)
                    continue
                folder, _, base = info.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                key = f"{folder}/{stem}" if folder else stem
                if not dot:
                    stats["rejected"] += 1
                    log.warning("%s: rejected member without extension %r", path, info.name)
                    continue
                if sample and sample["__key__"] != key:
                    yield sample
                    sample = {}
                f = tar.extractfile(info)
                sample["__key__"] = key
                sample[ext.lower()] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        stats["corrupt"] += 1
        stats["failed"] = 1  # the caller does not count the shortfall again
        log.warning("%s: unreadable tar data, rest of the shard skipped (%s)", path, e)
    if sample:
        yield sample


def buffer_shuffle(samples: Iterator[Any], rng: np.random.Generator, size: int) -> Iterator[Any]:
    """Deterministic buffer shuffle: holds `size` items; a buffer >= the shard is a permutation."""
    buf: list[Any] = []
    for s in samples:
        if len(buf) < size:
            buf.append(s)
            continue
        i = int(rng.integers(size))
        out, buf[i] = buf[i], s
        yield out
    for i in rng.permutation(len(buf)):
        yield buf[i]


def decode_sample(raw: dict[str, Any], image_size: int, icfg: ImageConfig, where: str) -> Sample:
    """Raw members -> `Sample` (pixel_values (1, S, S), text, labels (14,)); DataError."""
    name = f"{where}:{raw.get('__key__')}"
    missing = [ext for ext in ("png", "txt", "json") if ext not in raw]
    if missing:
        raise DataError(f"{name}: sample lacks member(s) {missing}")
    try:
        meta = json.loads(raw["json"])
        text = raw["txt"].decode("utf-8")
        labels = meta.get("labels") or {}
        values = [labels.get(k) for k in CHEXPERT_LABELS]
        label_t = torch.tensor([math.nan if v is None else float(v) for v in values])  # (14,)
    except (ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{name}: bad json/txt member ({e})") from None
    if not text.strip():
        raise DataError(f"{name}: empty text")
    pixels = decode_png(raw["png"], image_size, icfg, name)  # (1, S, S)
    return Sample(
        id=str(meta.get("id", raw["__key__"])), pixel_values=pixels, labels=label_t, text=text
    )


def sample_split(raw: dict[str, Any]) -> str | None:
    """The split named by a raw sample's json member ("" when it names none); None when the
    member is missing or unreadable (decoding then counts the sample as corrupt)."""
    try:
        meta = json.loads(raw["json"])
        return str(meta.get("split") or "")
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def webdataset_png_decoder(key: str, data: bytes) -> np.ndarray | None:
    """`webdataset` decode handler for medtrain's stored PNGs (8- and 16-bit grayscale):

        wds.WebDataset(urls).decode(webdataset_png_decoder)  # sample["png"]: (S, S) float32

    returns the intensity in [0, 1] (value / 255 or / 65535 by the PNG's own depth). Members
    that are not .png, and PNGs that are not 8/16-bit grayscale, return None so the next handler
    decides; an undecodable PNG is a DataError."""
    if key.rsplit(".", 1)[-1].lower() != "png":
        return None
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DataError(f"{key}: not a decodable PNG")
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        return None
    x = arr.astype(np.float32)  # (S, S)
    x *= np.float32(1.0 / (255.0 if arr.dtype == np.uint8 else 65535.0))
    return x


def split_counts(manifest: Manifest, split: str | None) -> list[int] | None:
    """Samples of `split` per shard (None: all samples): from the per-shard "splits" counts, or
    for manifests written before those from the writing option (a single split); None when
    unknown (an old `--split all` manifest: see `scan_split_counts`)."""
    if split is None:
        return [int(s["count"]) for s in manifest.shards]
    if all("splits" in s for s in manifest.shards):
        return [int(s["splits"].get(split, 0)) for s in manifest.shards]
    written = manifest.config.get("split")
    if written in (None, "all"):
        return None
    return [int(s["count"]) if written == split else 0 for s in manifest.shards]


def scan_split_counts(manifest: Manifest, split: str) -> list[int]:
    """Samples of `split` per shard counted from the json members (old `--split all` manifests
    without per-shard counts; reads the tar headers and the small json members only)."""
    log.info("%s: counting split %r from the json members (old manifest)", manifest.root, split)
    counts = []
    for s in manifest.shards:
        n = 0
        try:
            with tarfile.open(manifest.root / s["name"], mode="r:") as tar:
                for info in tar:
                    if unsafe_member(info) is None and info.name.lower().endswith(".json"):
                        f = tar.extractfile(info)
                        n += f is not None and sample_split({"json": f.read()}) == split
        except (tarfile.TarError, OSError, EOFError):
            pass  # a truncated shard: what was counted (the stream skips the rest too)
        counts.append(n)
    return counts


# ------------------------------------------------------------------------------------ state


class StreamState:
    """Which samples of which epoch have been handed out; see the module docstring."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        seed: int,
        buffer: int,
        split: str | None = None,
        wanted: list[int] | None = None,
    ) -> None:
        self.names = [s["name"] for s in manifest.shards]
        self.counts = [int(s["count"]) for s in manifest.shards]  # positions count these
        self.wanted = list(self.counts) if wanted is None else wanted  # samples of `split`
        self.index = {n: i for i, n in enumerate(self.names)}
        # planned shards: a shard may hold 0 samples (all quarantined) or none of the split
        self.nonempty = sum(w > 0 for w in self.wanted)
        self.fingerprint, self.seed, self.buffer = manifest.fingerprint(), seed, buffer
        self.split = split
        self.epoch = 0  # oldest epoch not yet complete
        self.consumed: dict[int, dict[int, int]] = {}  # epoch -> shard index -> prefix length
        self.complete: dict[int, int] = {}  # epoch -> number of finished shards
        self.base = dict.fromkeys(_COUNTERS, 0)  # counters restored from the checkpoint
        self.run = dict.fromkeys(_COUNTERS, 0)  # counters of this process since then

    def copy(self) -> StreamState:
        return copy.deepcopy(self)

    def order(self, epoch: int) -> list[int]:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.names)).tolist()

    def remaining(self, epoch: int) -> list[tuple[int, int]]:
        """(shard index, start position) of unfinished planned shards of `epoch`, in order."""
        done = self.consumed.get(epoch, {})
        return [
            (s, done.get(s, 0))
            for s in self.order(epoch)
            if self.wanted[s] > 0 and done.get(s, 0) < self.counts[s]
        ]

    def advance(self, epoch: int, shard: int, upto: int) -> None:
        if epoch < self.epoch or self.wanted[shard] == 0:
            return  # already complete, or a shard without the split (never planned)
        per = self.consumed.setdefault(epoch, {})
        before = per.get(shard, 0)
        upto = min(upto, self.counts[shard])
        if upto > before:
            per[shard] = upto
            if upto == self.counts[shard]:
                self.complete[epoch] = self.complete.get(epoch, 0) + 1
        while self.complete.get(self.epoch, 0) == self.nonempty:
            self.consumed.pop(self.epoch, None)
            self.complete.pop(self.epoch, None)
            self.epoch += 1

    def update(self, metas: list[tuple[tuple[int, int, int], dict[str, Any]]]) -> None:
        """Apply the tags of one received batch: [((epoch, shard, pos), events), ...]."""
        for (epoch, shard, pos), events in metas:
            for e, s in events.get("closed", ()):
                self.advance(e, s, self.counts[s])
            self.advance(epoch, shard, pos + 1)
            for k in _EVENTS:
                self.run[k] += events.get(k, 0)
            self.run["samples"] += 1

    @property
    def counters(self) -> dict[str, int]:
        return {k: self.base[k] + self.run[k] for k in _COUNTERS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "buffer": self.buffer,
            "split": self.split,
            "epoch": self.epoch,
            "consumed": {
                str(e): {self.names[s]: n for s, n in sorted(per.items())}
                for e, per in sorted(self.consumed.items())
            },
            "counters": dict(self.base),
            "run_counters": dict(self.run),
        }

    def load(self, d: dict[str, Any]) -> StreamState:
        """Restore from `to_dict` output (a single rank's or `merge_states`')."""
        for key, mine in (
            ("fingerprint", self.fingerprint),
            ("seed", self.seed),
            ("buffer", self.buffer),
        ):
            if d.get(key) != mine:
                raise DataError(
                    f"checkpointed loader state has {key}={d.get(key)!r} but this run has "
                    f"{mine!r}: resuming needs the same shard set, train.seed and "
                    "data.shuffle_buffer"
                )
        if "split" in d and d["split"] != self.split:  # states before split filtering: any
            raise DataError(
                f"checkpointed loader state streams split {d['split']!r} but this run streams "
                f"{self.split!r}: resume with the same data split"
            )
        self.epoch, self.consumed, self.complete = int(d["epoch"]), {}, {}
        for e, per in d["consumed"].items():
            for name, n in per.items():
                if name not in self.index:
                    raise DataError(f"checkpointed loader state names unknown shard {name!r}")
                self.advance(int(e), self.index[name], int(n))
        self.base = {
            k: d["counters"].get(k, 0) + d.get("run_counters", {}).get(k, 0) for k in _COUNTERS
        }
        self.run = dict.fromkeys(_COUNTERS, 0)
        return self


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One global state from every rank's `to_dict()` (same resume point, disjoint progress).

    A rank's view is the checkpoint plus its own progress, never more than the truth: an epoch
    one rank saw complete is complete, and per shard the furthest prefix is the global one.
    """
    epoch = max(int(s["epoch"]) for s in states)
    consumed: dict[str, dict[str, int]] = {}
    for s in states:
        for e, per in s["consumed"].items():
            if int(e) < epoch:
                continue
            into = consumed.setdefault(e, {})
            for name, n in per.items():
                into[name] = max(into.get(name, 0), n)
    run = {k: sum(s["run_counters"].get(k, 0) for s in states) for k in _COUNTERS}
    return {**states[0], "epoch": epoch, "consumed": consumed, "run_counters": run}


# ---------------------------------------------------------------------------------- dataset


class ShardStream(IterableDataset):
    """Endless stream of decoded samples for this rank; one consumer per dataloader worker.

    Yields (Sample, tag) pairs for `ShardLoader`: tag = ((epoch, shard, position), events), events
    = shards closed and corrupt / rejected members since the previous sample of this consumer.
    split: the data split to stream (None: every sample); see "Data split" in the module doc.
    """

    def __init__(
        self,
        shard_dir: str | Path,
        *,
        image_size: int,
        image: ImageConfig,
        seed: int,
        rank: int = 0,
        world: int = 1,
        buffer: int = 256,
        state: dict[str, Any] | None = None,
        split: str | None = None,
        verify: bool = True,
    ) -> None:
        self.manifest = read_manifest(shard_dir)
        self.verify = verify  # data.verify_shards: sha256 checked on a shard's first open
        if not self.manifest.shards or self.manifest.total == 0:
            raise DataError(f"{shard_dir}: the shard manifest lists no samples")
        if buffer < 1:
            raise DataError(f"data.shuffle_buffer must be >= 1, got {buffer}")
        self.image_size, self.image, self.rank, self.world = image_size, image, rank, world
        self.split = split
        wanted = split_counts(self.manifest, split)
        if wanted is None:
            wanted = scan_split_counts(self.manifest, split)  # type: ignore[arg-type]
        if sum(wanted) == 0:
            written = self.manifest.config.get("split", "?")
            raise DataError(
                f"{shard_dir}: the shards hold no sample of split {split!r} (written with "
                f"--split {written}); prepare shards with --split {split} or --split all"
            )
        self.start = StreamState(
            self.manifest, seed=seed, buffer=buffer, split=split, wanted=wanted
        )
        if state is not None:
            self.start.load(state)

    @property
    def samples_per_epoch(self) -> int:  # all ranks, samples of the split; the stream is endless
        return sum(self.start.wanted)

    def consumers(self) -> tuple[int, int]:
        info = get_worker_info()
        k, n = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * n + k, self.world * n

    def plan(self, consumer: int, n_consumers: int) -> Iterator[tuple[int, int, int]]:
        """(epoch, shard, start position) for one consumer, from the frozen start state."""
        if self.start.nonempty < n_consumers:
            raise DataError(
                f"{self.manifest.root}: {self.start.nonempty} shards with samples"
                f"{'' if self.split is None else f' of split {self.split!r}'} cannot feed "
                f"{n_consumers} consumers (ranks x dataloader workers); write smaller shards "
                "or use fewer data.num_workers"
            )
        epoch = self.start.epoch
        while True:
            for shard, offset in self.start.remaining(epoch)[consumer::n_consumers]:
                yield epoch, shard, offset
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        consumer, n = self.consumers()
        st, names = self.start, self.start.names
        events: dict[str, Any] = {"closed": [], **dict.fromkeys(_EVENTS, 0)}
        idle = 0  # consecutive shards that yielded nothing
        for epoch, shard, offset in self.plan(consumer, n):
            path = self.manifest.root / names[shard]
            stats = dict.fromkeys(_EVENTS, 0)
            if self.verify and checked_shard(self.manifest.root, self.manifest.shards[shard]):
                events["checksum"] += 1  # skipped whole: "closed" completes it for the epoch
                events["closed"].append((epoch, shard))
                idle += 1
                if idle > len(names):
                    raise DataError(f"{self.manifest.root}: no readable shard ({idle} in a row)")
                continue
            rng = np.random.default_rng([st.seed, epoch, shard])
            yielded = n_raw = 0
            raw_iter = buffer_shuffle(iter_tar_samples(path, stats), rng, st.buffer)
            for pos, raw in enumerate(raw_iter):
                n_raw = pos + 1
                if pos < offset:  # handed out before the checkpoint: not decoded again
                    stats.update(corrupt=0, rejected=0)  # and counted then
                    continue
                if self.split is not None and sample_split(raw) not in (self.split, None):
                    continue  # another split: never decoded nor handed out ("closed" covers it)
                try:
                    sample = decode_sample(raw, self.image_size, self.image, str(path))
                except DataError as e:
                    log.warning("skipping corrupt sample: %s", e)
                    events["corrupt"] += 1
                    continue
                for k in _EVENTS:
                    events[k] += stats[k]
                    stats[k] = 0
                tag = ((epoch, shard, pos), events)
                events = {"closed": [], **dict.fromkeys(_EVENTS, 0)}
                yielded += 1
                yield sample, tag
            for k in _EVENTS:
                events[k] += stats[k]
            short = st.counts[shard] - n_raw
            if short > 0 and not stats.get("failed"):  # cut at a member boundary: no error
                log.warning(
                    "%s: %d of the manifest's %d samples missing (truncated shard?)",
                    path,
                    short,
                    st.counts[shard],
                )
                events["corrupt"] += short
            events["closed"].append((epoch, shard))
            idle = 0 if yielded else idle + 1
            if idle > len(names):
                of = "" if self.split is None else f" of split {self.split!r}"
                raise DataError(
                    f"{self.manifest.root}: no readable sample{of} in {idle} consecutive shards"
                )


class _TaggedCollate:
    """collate_fn wrapper: -> (tags, batch); tags = [((epoch, shard, pos), events), ...]."""

    def __init__(self, collate_fn: Callable[[list[Sample]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, tagged: list[tuple[Sample, Any]]):
        tags = [tag for _, tag in tagged]
        return tags, self.collate_fn([sample for sample, _ in tagged])


class ShardLoader:
    """Batches from a ShardStream through a DataLoader, tracking the loader state exactly.

    `state_dict()` covers the batches yielded so far (not those prefetched by workers). Each
    DataLoader it creates takes its own torch.Generator seeded from the stream seed, rank and
    position, so creating one never draws from the global torch RNG (which a faithful resume
    restores for dropout only).
    """

    def __init__(
        self,
        stream: ShardStream,
        *,
        batch_size: int,
        collate_fn: Callable[[list[Sample]], Any],
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.stream, self.state = stream, stream.start.copy()
        self.last_tags: list[tuple[tuple[int, int, int], dict[str, Any]]] = []  # of last batch
        self.kwargs = {
            "batch_size": batch_size,
            "collate_fn": _TaggedCollate(collate_fn),
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "persistent_workers": False,
        }

    def generator(self) -> torch.Generator:
        """The loader's own RNG (worker base seeds): from (seed, rank, epoch, samples so far)."""
        st = self.state
        done = sum(sum(per.values()) for per in st.consumed.values())
        key = np.random.SeedSequence([st.seed, self.stream.rank, st.epoch, done])
        return torch.Generator().manual_seed(int(key.generate_state(1, np.uint64)[0] >> 1))

    def __iter__(self) -> Iterator[Any]:
        # Restart from what has been handed out, so a new iterator neither repeats nor skips.
        self.stream.start = self.state.copy()
        self.stream.start.run = dict.fromkeys(_COUNTERS, 0)
        loader = DataLoader(self.stream, generator=self.generator(), **self.kwargs)
        for tags, batch in loader:
            self.state.update(tags)
            self.last_tags = tags
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return self.state.to_dict()


# ------------------------------------------------------------------------ map-style (eval)


class ShardIndexDataset(Dataset):
    """Random access to the first `limit` samples (0: all) of `split` (None: every sample) of a
    shard directory, in shard order (evaluation).

    Indexes member offsets from the tar headers once (and, with a split, reads the small json
    members to keep that split's samples); items are read with a seek each. Faults never abort:
    a shard whose sha256 differs from the manifest (verify) is not indexed, a truncated tar
    keeps the samples before the damage (both counted in `skipped`), and an item that does not
    decode raises DataError for the evaluator to skip and count (medtrain/eval/runner.py).
    """

    def __init__(
        self,
        shard_dir: str | Path,
        *,
        image_size: int,
        image: ImageConfig,
        limit: int = 0,
        split: str | None = None,
        verify: bool = True,
    ) -> None:
        self.manifest = read_manifest(shard_dir)
        self.image_size, self.image, self.split = image_size, image, split
        self.items: list[tuple[Path, str, dict[str, tuple[int, int]]]] = []
        self.skipped = {"corrupt": 0, "checksum": 0}  # shards (or their tails) not indexed
        wanted = split_counts(self.manifest, split)  # None (unknown): look at every shard
        for i, s in enumerate(self.manifest.shards):
            if wanted is not None and wanted[i] == 0:
                continue
            if verify and checked_shard(self.manifest.root, s):
                self.skipped["checksum"] += 1
                continue
            path = self.manifest.root / s["name"]
            found = self._index(path)
            if len(found) < int(s["count"]) and not self._failed:  # cut at a member boundary
                self.skipped["corrupt"] += 1
                log.warning(
                    "%s: %d of the manifest's %d samples missing (truncated shard?)",
                    path,
                    int(s["count"]) - len(found),
                    s["count"],
                )
            if split is not None:
                with path.open("rb") as f:
                    found = [it for it in found if self._split_of(f, it[2]) in (split, None)]
            self.items += found[: limit - len(self.items)] if limit else found
            if limit and len(self.items) >= limit:
                break
        if not self.items:
            of = "" if split is None else f" of split {split!r}"
            raise DataError(
                f"{shard_dir}: no samples{of} in the shards (unreadable: {self.skipped})"
            )

    def _index(self, path: Path) -> list[tuple[Path, str, dict[str, tuple[int, int]]]]:
        """(path, key, {ext: (offset, size)}) per sample from the tar headers; a read error
        (truncated or damaged tar) keeps what came before it, counted and logged."""
        found: list[tuple[Path, str, dict[str, tuple[int, int]]]] = []
        self._failed = False
        try:
            with tarfile.open(path, mode="r:") as tar:
                for info in tar:
                    if unsafe_member(info) is not None or "." not in info.name:
                        continue
                    key, ext = info.name.split(".", 1)
                    if not found or found[-1][1] != key:
                        found.append((path, key, {}))
                    found[-1][2][ext] = (info.offset_data, info.size)
        except (tarfile.TarError, OSError, EOFError) as e:
            self.skipped["corrupt"] += 1
            self._failed = True
            log.warning("%s: unreadable tar data, rest of the shard skipped (%s)", path, e)
        return found

    @staticmethod
    def _split_of(f: Any, members: dict[str, tuple[int, int]]) -> str | None:
        if "json" not in members:
            return None  # decoding reports the missing member
        offset, size = members["json"]
        f.seek(offset)
        return sample_split({"json": f.read(size)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, key, members = self.items[i]
        raw: dict[str, Any] = {"__key__": key}
        with path.open("rb") as f:
            for ext, (offset, size) in members.items():
                f.seek(offset)
                raw[ext] = f.read(size)
        return decode_sample(raw, self.image_size, self.image, str(path))
