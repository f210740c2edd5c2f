"""Data configuration, and the in-memory records path: a map-style dataset + resumable sampler.

`data.format=records` indexes a source reader's records in RAM (the synthetic demo, Open-I,
fine-tuning sets). `data.format=shards` streams tar shards written by `medtrain data prepare`
(shards.py, stream.py) for ~10M pairs.
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

from medtrain.data.errors import DataError
from medtrain.data.images import ImageConfig, load_image
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.records import Record
from medtrain.data.reports import training_text
from medtrain.data.sources import get_source

FORMATS = ("records", "shards")
log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class DataConfig:
    source: str = "mimic-cxr-jpg"  # reader name, see medtrain.data.sources.SOURCES
    root: str = "data/synth-mimic"
    views: tuple[str, ...] = ("PA", "AP")  # MIMIC ViewPosition filter; () keeps all views
    train_split: str = "train"
    eval_split: str = "validate"
    max_eval_samples: int = 512
    num_workers: int = 2
    on_bad_image: str = "skip"  # skip (log and substitute another sample) | error
    image: ImageConfig = field(default_factory=ImageConfig)
    format: str = "records"  # records: index data.root in RAM | shards: stream data.shards
    shards: str = ""  # train shard directory (`medtrain data prepare --out DIR`)
    eval_shards: str = ""  # evaluate from this shard directory instead of data.root's eval split
    shuffle_buffer: int = 256  # within-shard shuffle buffer of the streaming loader (samples)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"data.format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.format == "shards" and not self.shards:
            raise ValueError("data.format=shards needs data.shards=DIR (a prepared shard dir)")
        if self.shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer must be >= 1, got {self.shuffle_buffer}")


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
        from medtrain.data.stream import ShardIndexDataset

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
