"""The training and evaluation data pipeline: records or shards, chosen once.

`build_pipeline(data_cfg, image_size=S)` -> `Pipeline`, the one place that decides
  * where samples come from: `data.format=records` indexes a source reader's records in RAM (the
    synthetic demo, Open-I, fine-tuning sets), `data.format=shards` streams the tar shards written
    by `medtrain data prepare` (data/shards/read.py); evaluation reads `data.eval_shards` when set,
    else the records of `data.eval_split`;
  * where contrast normalization runs: in the dataloader workers, or (`data.image.lcn_device=gpu`)
    on the batch on the training device, in `Pipeline.on_device`, for training and evaluation
    alike;
  * how a sample is built: one typed `Sample` (data/records.py) whose text comes only from
    `medtrain.data.text.record_text` (de-identification, then sectioning); records without usable
    text are skipped with their reason.

Train streams: records use `PairDataset` + `ResumableSampler`, position (epoch, micro-batches
consumed) per rank, so a resume needs the same world size. Shards use the resumable stream, whose
state is world-size-free, so a run may resume on a different number of ranks (ZeRO-0 checkpoints;
ZeRO-1/2/3 ones need DeepSpeed's universal-checkpoint conversion for that). The loop only sees
batches, `state()` and `restore()`. Every DataLoader a train stream creates takes its own
torch.Generator (from the seed, rank and position), never the global torch RNG.

Bad input never aborts: records the readers or the text path cannot use (missing files, reports
that are not UTF-8, malformed rows, wrong labels) are skipped with their reason, logged as one
line with counts by kind and reported in the metrics (`data/skipped`); shard faults are counted
by the stream (`data/corrupt`, `data/bad_shards`) and by evaluation (`skipped`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medtrain.data.config import DataConfig
from medtrain.data.errors import DataError
from medtrain.data.images import batch_transform, load_image
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record, Sample
from medtrain.data.shards.read import ShardIndexDataset, ShardLoader, ShardStream, merge_states
from medtrain.data.sources import open_source, source_options
from medtrain.data.text import record_text

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ records path


def load_records(
    cfg: DataConfig, split: str, *, limit: int = 0
) -> tuple[list[Record], list[str], list[tuple]]:
    """Records of one split with their training text; returns (records, texts, skipped).

    A record whose report gives no training text (none, empty, only headers) is skipped and
    listed in `skipped` as (id, reason), like the items the reader itself could not use.
    `limit` > 0 stops reading after that many usable records (the reader's order).
    """
    return read_split(cfg, split, convert=lambda rec: record_text(rec, cfg.deid), limit=limit)


def read_split(
    cfg: DataConfig, split: str, *, convert: Callable[[Record], Any], limit: int = 0
) -> tuple[list[Record], list[Any], list[tuple[str, str]]]:
    """(records, convert(record) of each, skipped (id, reason)) of one split.

    A DataError raised by `convert` skips the record with its message as the reason, beside the
    items the reader itself could not use; the skips are logged as one line of counts. `limit`
    > 0 stops after that many usable records. DataError when the root is missing or no record
    is usable.
    """
    root = Path(cfg.root)
    if not root.exists():  # a folder, or for the manifest source the manifest file itself
        raise DataError(
            f"data root {root} does not exist; generate the demo data with "
            f"`medtrain data synth --out {root}` or set data.root"
        )
    skipped: list[tuple[str, str]] = []
    records, values = [], []
    for rec in open_source(
        cfg.source, root, splits=[split], skipped=skipped, **source_options(cfg)
    ):
        try:
            values.append(convert(rec))
        except DataError as e:
            skipped.append((rec.id, str(e)))
            continue
        records.append(rec)
        if len(records) == limit:
            break
    if skipped:
        log.warning(
            "%s split %s: skipped %d records (%s), e.g. %s",
            root,
            split,
            len(skipped),
            skip_summary(skipped),
            skipped[:3],
        )
    if not records:
        raise DataError(
            f"no usable {split!r} records under {root} (source {cfg.source}); "
            f"{len(skipped)} skipped, e.g. {skipped[:3]}"
        )
    return records, values, skipped


SKIP_KINDS = (  # reason text -> kind, for the one-line count of a records load's skips
    ("not valid UTF-8", "not UTF-8"),
    ("short row", "malformed row"),
    ("malformed row", "malformed row"),
    ("bad label", "bad label"),
    ("unknown split", "bad split"),
    ("missing image", "missing image"),
    ("missing report", "missing report"),
    ("empty", "empty report"),
)


def skip_summary(skipped: list[tuple[str, str]]) -> str:
    """'3 not UTF-8, 1 malformed row, 2 other': the kinds of a skip list, for logs."""
    counts: dict[str, int] = {}
    for _, reason in skipped:
        kind = next((k for text, k in SKIP_KINDS if text in reason), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def labels_tensor(rec: Record) -> torch.Tensor:
    """(14,) float: 1 / 0 / -1 (uncertain), NaN where the label is blank."""
    return torch.tensor(
        [math.nan if rec.labels.get(k) is None else float(rec.labels[k]) for k in CHEXPERT_LABELS]
    )


class PairDataset(Dataset):
    """Index -> `Sample` (pixel_values (1, S, S), training text, labels (14,)) of one split
    (its first `limit` usable records when limit > 0)."""

    def __init__(self, cfg: DataConfig, split: str, image_size: int, *, limit: int = 0) -> None:
        self.cfg, self.image_size = cfg, image_size
        self.records, self.texts, self.skipped = load_records(cfg, split, limit=limit)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> Sample:
        for attempt in range(len(self.records)):
            i = (idx + attempt) % len(self.records)
            rec = self.records[i]
            try:
                pixels = load_image(rec.image_path, self.image_size, self.cfg.image, rec.image_kind)
            except DataError as e:
                if self.cfg.on_bad_image == "error":
                    raise
                log.warning("skipping bad image (substituting the next sample): %s", e)
                continue
            return Sample(
                id=rec.id,
                pixel_values=pixels,
                labels=labels_tensor(rec),
                text=self.texts[i],
                question=rec.question,
                answer=rec.answer,
            )
        raise DataError(f"no readable image among {len(self.records)} records")


class ResumableSampler(Sampler[int]):
    """Deterministic per-epoch shuffle split across ranks, resumable mid-epoch.

    Every epoch uses `num_batches * batch * world` samples of a permutation seeded by
    (seed, epoch); rank r takes every world-th. `start_batch` skips the batches this rank already
    consumed before a restart (same world size).
    """

    def __init__(self, n: int, *, batch_size: int, rank: int, world: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.world, self.seed = n, batch_size, rank, world, seed
        self.batches_per_epoch = n // (batch_size * world)
        if self.batches_per_epoch == 0:
            raise DataError(
                f"{n} samples cannot fill one step of {batch_size} x {world} ranks; "
                "use more data or a smaller train.micro_batch_size"
            )
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        used = perm[: self.batches_per_epoch * self.batch_size * self.world]
        mine = used[self.rank :: self.world]
        return iter(mine[self.start_batch * self.batch_size :].tolist())


# ----------------------------------------------------------------------------- train streams


class RecordsData:
    """Endless micro-batches of the in-memory records of data.train_split for one rank."""

    def __init__(
        self,
        cfg: DataConfig,
        *,
        image_size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        collator: Callable[[list[Sample]], dict[str, Any]],
    ) -> None:
        self.dataset = PairDataset(cfg, cfg.train_split, image_size)
        self.sampler = ResumableSampler(
            len(self.dataset), batch_size=batch_size, rank=rank, world=world, seed=seed
        )
        self.collator, self.workers, self.rank = collator, cfg.num_workers, rank
        self.seed = seed
        self.epoch, self.micro = 0, 0  # this rank's position: micro-batches consumed in epoch
        self.n_train = len(self.dataset)

    def restore(self, client: dict[str, Any]) -> None:
        if "data" not in client:
            raise DataError("checkpoint holds no records-loader position (trained from shards?)")
        if str(self.rank) not in client["data"]:
            raise DataError(
                f"checkpoint was written by {client.get('world_size')} ranks; data.format=records "
                "resumes on the same number of ranks (data.format=shards resumes on any)"
            )
        pos = client["data"][str(self.rank)]
        self.epoch, self.micro = pos["epoch"], pos["micro"]

    def state(self, world: int) -> dict[str, Any]:
        """Collective: every rank's position, for the checkpoint's client state."""
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, {"epoch": self.epoch, "micro": self.micro})
        return {"data": {str(r): p for r, p in enumerate(gathered)}}

    def scalars(self) -> dict[str, float]:  # data/skipped: records the load could not use
        return {"data/epoch": float(self.epoch), "data/skipped": float(len(self.dataset.skipped))}

    def generator(self) -> torch.Generator:
        """The loader's own RNG (worker base seeds), from (seed, rank, epoch, micro): creating a
        loader never draws from the global torch RNG, which a resume restores for dropout."""
        key = np.random.SeedSequence([self.seed, self.rank, self.epoch, self.micro])
        return torch.Generator().manual_seed(int(key.generate_state(1, np.uint64)[0] >> 1))

    def batches(self) -> Iterator[dict[str, Any]]:
        """Endless micro-batches across epochs, advancing the position as they are consumed."""
        while True:
            self.sampler.set_position(self.epoch, self.micro)
            loader = DataLoader(
                self.dataset,
                batch_size=self.sampler.batch_size,
                sampler=self.sampler,
                collate_fn=self.collator,
                num_workers=self.workers,
                drop_last=True,
                pin_memory=torch.cuda.is_available(),
                generator=self.generator(),
            )
            for batch in loader:
                self.micro += 1
                yield batch
            self.epoch, self.micro = self.epoch + 1, 0


class ShardsData:
    """Endless micro-batches of the data.train_split samples of data.shards for one rank."""

    def __init__(
        self,
        cfg: DataConfig,
        *,
        image_size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        collator: Callable[[list[Sample]], dict[str, Any]],
    ) -> None:
        self.cfg, self.image_size, self.batch_size = cfg, image_size, batch_size
        self.rank, self.world, self.seed, self.collator = rank, world, seed, collator
        self.saved: dict[str, Any] | None = None
        self.loader: ShardLoader | None = None
        self.n_train = self._stream().samples_per_epoch

    def _stream(self) -> ShardStream:
        return ShardStream(
            self.cfg.shards,
            image_size=self.image_size,
            image=self.cfg.image,
            seed=self.seed,
            rank=self.rank,
            world=self.world,
            buffer=self.cfg.shuffle_buffer,
            state=self.saved,
            split=self.cfg.train_split,
            verify=self.cfg.verify_shards,
        )

    def restore(self, client: dict[str, Any]) -> None:
        if "stream" not in client:
            raise DataError("checkpoint holds no streaming-loader state (not trained from shards)")
        self.saved = client["stream"]

    def state(self, world: int) -> dict[str, Any]:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, self.loader.state_dict())
        return {"stream": merge_states(gathered)}

    def scalars(self) -> dict[str, float]:
        counters = self.loader.state.counters  # this rank's skipped shard members so far
        return {
            "data/corrupt": float(counters["corrupt"] + counters["rejected"]),
            "data/bad_shards": float(counters["checksum"]),  # sha256 mismatch: skipped whole
            "data/epoch": float(self.loader.state.epoch),
        }

    def batches(self) -> Iterator[dict[str, Any]]:
        self.loader = ShardLoader(
            self._stream(),
            batch_size=self.batch_size,
            collate_fn=self.collator,
            num_workers=self.cfg.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        return iter(self.loader)  # endless


TrainStream = RecordsData | ShardsData


# ---------------------------------------------------------------------------------- pipeline


class Pipeline:
    """Train stream, eval samples and device-side preprocessing of one DataConfig.

    train(...)      -> the endless, resumable micro-batch stream of data.train_split
    eval()          -> map-style `Sample`s of data.eval_split (data.eval_shards if set)
    samples(split)  -> map-style `Sample`s of any split, from the train source (records or
                       data.shards): what `medtrain data preview` prints
    on_device(batch, device, dtype) -> the batch on the device, pixel_values finished there
    """

    def __init__(self, cfg: DataConfig, *, image_size: int) -> None:
        self.cfg, self.image_size = cfg, image_size
        self.from_shards = cfg.format == "shards"  # the records-vs-shards choice, made here
        # LCN placement: every dataset below gets data.image, so with lcn_device=gpu they stop
        # after fitting (images.finish) and on_device, the one caller of batch_transform, runs
        # the Gaussian LCN on the batch, for training, evaluation and preview alike.

    def train(
        self,
        *,
        batch_size: int,
        collator: Callable[[list[Sample]], dict[str, Any]],
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
    ) -> TrainStream:
        cls = ShardsData if self.from_shards else RecordsData
        return cls(
            self.cfg,
            image_size=self.image_size,
            batch_size=batch_size,
            rank=rank,
            world=world,
            seed=seed,
            collator=collator,
        )

    def eval(self) -> Dataset:
        """Held-out `Sample`s of data.eval_split: from data.eval_shards (only the first
        data.max_eval_samples are indexed) if set, else all the split's records (the evaluator
        takes as many as it is told)."""
        if self.cfg.eval_shards:
            return self._indexed(
                self.cfg.eval_split, self.cfg.eval_shards, self.cfg.max_eval_samples
            )
        return self._indexed(self.cfg.eval_split, "", 0)

    def samples(self, split: str, *, limit: int = 0) -> Dataset:
        """The first `limit` (0: all) `Sample`s of `split` from the train source."""
        return self._indexed(split, self.cfg.shards if self.from_shards else "", limit)

    def _indexed(self, split: str, shard_dir: str, limit: int) -> Dataset:
        if shard_dir:
            return ShardIndexDataset(
                shard_dir,
                image_size=self.image_size,
                image=self.cfg.image,
                limit=limit,
                split=split,
                verify=self.cfg.verify_shards,
            )
        return PairDataset(self.cfg, split, self.image_size, limit=limit)

    def on_device(
        self, batch: dict[str, Any], device: torch.device | str, dtype: torch.dtype
    ) -> dict[str, Any]:
        """Tensors to `device`; pixel_values (B, 1, S, S) finished there in fp32, then `dtype`."""
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(device, non_blocking=True)
                out[k] = batch_transform(v, self.cfg.image).to(dtype) if k == "pixel_values" else v
            else:
                out[k] = v
        return out


def build_pipeline(cfg: DataConfig, *, image_size: int) -> Pipeline:
    """The data pipeline of a run: `build_pipeline(run_cfg.data, image_size=model img_size)`."""
    return Pipeline(cfg, image_size=image_size)
