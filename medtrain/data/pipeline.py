"""The training and evaluation data pipeline: records or shards, chosen once.

`data.format=records` indexes a source reader's records in RAM (the synthetic demo, Open-I,
fine-tuning sets): `PairDataset` + `ResumableSampler`, position (epoch, micro-batches consumed)
per rank, so a resume needs the same world size. `data.format=shards` streams tar shards written
by `medtrain data prepare` (data/shards/read.py); its state is world-size-free, so a run may
resume on a different number of ranks (ZeRO-0 checkpoints; ZeRO-1/2/3 ones need DeepSpeed's
universal-checkpoint conversion for that). The loop only sees batches, `state()` and `restore()`.
"""

from __future__ import annotations
import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
import torch
from torch.utils.data import Dataset, Sampler
from medtrain.data.config import DataConfig
from medtrain.data.errors import DataError
from medtrain.data.images import ImageConfig, load_image
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.data.reports import training_text
from medtrain.data.sources import get_source
from collections.abc import Callable, Iterator
from typing import Any
from torch.utils.data import DataLoader
from medtrain.data.shards.read import ShardLoader, ShardStream, merge_states

log = logging.getLogger(__name__)


def load_records(cfg: DataConfig, split: str) -> tuple[list[Record], list[str], list[tuple]]:
    """Records of one split with their training text; returns (records, texts, skipped)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist; generate the demo data with "
            f"`medtrain data synth --out {root}` or set data.root"
        )
    reader = get_source(cfg.source)
    kwargs = {"splits": [split]}
    if cfg.source == "mimic-cxr-jpg":
        kwargs["views"] = list(cfg.views) or None
    skipped: list[tuple[str, str]] = []
    records, texts = [], []
    for rec in reader(root, skipped=skipped, **kwargs):
        try:
            texts.append(training_text(rec.report))
        except DataError as e:
            skipped.append((rec.id, str(e)))
            continue
        records.append(rec)
    if skipped:
        log.warning(
            "%s split %s: skipped %d records, e.g. %s", root, split, len(skipped), skipped[:3]
        )
    if not records:
        raise DataError(
            f"no usable {split!r} records under {root} (source {cfg.source}); "
            f"{len(skipped)} skipped, e.g. {skipped[:3]}"
        )
    return records, texts, skipped


def labels_tensor(rec: Record) -> torch.Tensor:
    """(14,) float: 1 / 0 / -1 (uncertain), NaN where the label is blank."""
    return torch.tensor(
        [math.nan if rec.labels.get(k) is None else float(rec.labels[k]) for k in CHEXPERT_LABELS]
    )


class PairDataset(Dataset):
    """Index -> {"id", "pixel_values" (1, S, S), "text", "labels" (14,)}."""

    def __init__(self, cfg: DataConfig, split: str, image_size: int) -> None:
        self.cfg, self.image_size = cfg, image_size
        self.records, self.texts, self.skipped = load_records(cfg, split)
        if cfg.on_bad_image not in ("skip", "error"):
            raise DataError(f"data.on_bad_image must be skip or error, got {cfg.on_bad_image!r}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> dict:
        for attempt in range(len(self.records)):
            rec = self.records[(idx + attempt) % len(self.records)]
            try:
                pixels = load_image(rec.image_path, self.image_size, self.cfg.image, rec.image_kind)
            except DataError as e:
                if self.cfg.on_bad_image == "error":
                    raise
                log.warning("skipping bad image (substituting the next sample): %s", e)
                continue
            return {
                "id": rec.id,
                "pixel_values": pixels,
                "text": self.texts[(idx + attempt) % len(self.records)],
                "labels": labels_tensor(rec),
            }
        raise DataError(f"no readable image among {len(self.records)} records")


def eval_dataset(cfg: DataConfig, image_size: int) -> Dataset:
    """Held-out pairs for evaluation: data.eval_shards if set, else data.root's eval split.

    Contrast normalization always runs in the dataset here (the evaluator feeds pixel_values to
    the model as they come), so a GPU-LCN training config evaluates on the same inputs.
    """
    image = dataclasses.replace(cfg.image, lcn_device="worker")
    eval_cfg = dataclasses.replace(cfg, image=image)
    if cfg.eval_shards:
        from medtrain.data.shards.read import ShardIndexDataset

        return ShardIndexDataset(
            cfg.eval_shards, image_size=image_size, image=image, limit=cfg.max_eval_samples
        )
    return PairDataset(eval_cfg, cfg.eval_split, image_size)


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


class RecordsData:
    def __init__(
        self,
        cfg: DataConfig,
        *,
        image_size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        collator: Callable,
    ) -> None:
        self.dataset = PairDataset(cfg, cfg.train_split, image_size)
        self.sampler = ResumableSampler(
            len(self.dataset), batch_size=batch_size, rank=rank, world=world, seed=seed
        )
        self.collator, self.workers, self.rank = collator, cfg.num_workers, rank
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

    def scalars(self) -> dict[str, float]:
        return {"data/epoch": float(self.epoch)}

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
            )
            for batch in loader:
                self.micro += 1
                yield batch
            self.epoch, self.micro = self.epoch + 1, 0


class ShardsData:
    def __init__(
        self,
        cfg: DataConfig,
        *,
        image_size: int,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        collator: Callable,
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


def build_train_data(cfg: DataConfig, **kwargs: Any) -> RecordsData | ShardsData:
    return (RecordsData if cfg.format == "records" else ShardsData)(cfg, **kwargs)
