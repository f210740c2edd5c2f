"""The training-data stream behind the loop: endless micro-batches plus a checkpointable position.

data.format=records: in-memory PairDataset + ResumableSampler; the position is (epoch,
micro-batches consumed) per rank, so a resume needs the same world size.
data.format=shards: the streaming loader of medtrain/data/stream.py; its state is world-size-free,
so a run may resume on a different number of ranks (ZeRO-0 checkpoints; ZeRO-1/2/3 ones need
DeepSpeed's universal-checkpoint conversion for that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from medtrain.data.dataset import DataConfig, PairDataset, ResumableSampler
from medtrain.data.errors import DataError
from medtrain.data.stream import ShardLoader, ShardStream, merge_states


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
