"""Records and batches of a fine-tuning run.

- load_split: the records of one split of data.source (open_source, the readers' own skips) that
  the task can use (task.keep), every skip counted and logged in one line.
- label_fraction: the training subset of finetune.label_fraction, sampled by patient
  (subject_id; the record id where a source has none) with finetune.fraction_seed: at least one
  patient, deterministic, the same subset in every arm of a comparison.
- read_train: the training records of a run, read the one way the loop and `medtrain eval` both
  use (task.keep before the task's state; fit_vocab or task.json; then label_fraction).
- TaskDataset: index -> the task's item dict (image decoded with data.image). Training: a bad
  image is skipped and the next record substituted (data.on_bad_image=skip), as PairDataset does.
  Evaluation (for_evaluation()): an unreadable record gives an Unreadable marker instead, which
  EvalBatches leaves out and counts, so every prediction id is a record's own and occurs once.
- TrainStream: endless micro-batches for one rank, resumable (position = epoch, micro-batch).
  A training set smaller than one global batch (1% of a small data set) is repeated within an
  epoch (index i -> i mod n) until it fills one: every sample is seen once or more per epoch,
  never dropped, and the steps of a run do not depend on the fraction.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medtrain.data.config import DataConfig
from medtrain.data.errors import DataError
from medtrain.data.images import batch_transform, load_image
from medtrain.data.pipeline import ResumableSampler, read_split
from medtrain.data.records import Record

if TYPE_CHECKING:
    from medtrain.config import RunConfig
    from medtrain.finetune.tasks.base import Task

log = logging.getLogger(__name__)


def load_split(
    data: DataConfig, split: str, keep: Callable[[Record], str | None]
) -> tuple[list[Record], list[tuple[str, str]]]:
    """(records the task keeps, skipped (id, reason)) of one split; DataError when none.
    `keep(record)` is None to keep it, else the reason it is skipped (counted and logged)."""

    def check(rec: Record) -> None:
        why = keep(rec)
        if why is not None:
            raise DataError(why)

    records, _, skipped = read_split(data, split, convert=check)
    return records, skipped


def label_fraction(records: Sequence[Record], fraction: float, seed: int) -> list[Record]:
    """The records of round(fraction x patients) patients (>= 1), drawn with `seed`; the
    records keep their order. fraction 1.0 returns every record."""
    if fraction >= 1.0:
        return list(records)
    subjects = sorted({r.subject_id or r.id for r in records})
    k = max(1, round(fraction * len(subjects)))
    chosen = set(random.Random(seed).sample(subjects, k))
    return [r for r in records if (r.subject_id or r.id) in chosen]


def read_train(
    cfg: RunConfig, task: Task, state: dict[str, Any] | None = None
) -> tuple[list[Record], list[Record]]:
    """(the whole training split the task keeps, the finetune.label_fraction subset trained on).

    `task` must not have its state yet: the split is read with task.keep first (for cls: any
    label at all, not only one of the fitted label set), then the task gets `state` (task.json:
    resume, `medtrain eval`) or fits its vocabulary on the whole split. The fine-tuning loop and
    `medtrain eval` read it this one way, so an evaluation re-run samples the same patients and
    scores the same baseline as the run's own final evaluation."""
    ft, data = cfg.finetune, cfg.data
    all_train, _ = load_split(data, data.train_split, task.keep)
    if state is not None:
        task.load_state(state)
    else:
        task.fit_vocab(all_train)
    return all_train, label_fraction(all_train, ft.label_fraction, ft.fraction_seed)


class Unreadable(NamedTuple):
    """What an evaluation TaskDataset yields for a record whose image cannot be read."""

    id: str
    reason: str


class TaskDataset(Dataset):
    """Index -> make_item(record, pixel_values (1, S, S)). Bad images: substituted by the next
    record's (training), or an Unreadable marker (for_evaluation())."""

    def __init__(
        self,
        records: Sequence[Record],
        data: DataConfig,
        image_size: int,
        make_item: Callable[[Record, torch.Tensor], dict[str, Any]],
        *,
        substitute: bool = True,
    ) -> None:
        self.records, self.data, self.size = list(records), data, image_size
        self.make_item, self.substitute = make_item, substitute

    def for_evaluation(self) -> TaskDataset:
        """The same records without substitution: a substituted image would predict one record
        twice under two ids (or one id twice), and the scorer rejects repeated ids."""
        return TaskDataset(self.records, self.data, self.size, self.make_item, substitute=False)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> dict[str, Any] | Unreadable:
        if not self.substitute:
            return self._own(self.records[idx])
        for attempt in range(len(self.records)):
            rec = self.records[(idx + attempt) % len(self.records)]
            try:
                pixels = load_image(rec.image_path, self.size, self.data.image, rec.image_kind)
            except DataError as e:
                if self.data.on_bad_image == "error":
                    raise
                log.warning("skipping bad image (substituting the next sample): %s", e)
                continue
            return self.make_item(rec, pixels)
        raise DataError(f"no readable image among {len(self.records)} records")

    def _own(self, rec: Record) -> dict[str, Any] | Unreadable:
        """rec's item, or Unreadable(rec.id, why) (data.on_bad_image=error: the DataError)."""
        try:
            pixels = load_image(rec.image_path, self.size, self.data.image, rec.image_kind)
        except DataError as e:
            if self.data.on_bad_image == "error":
                raise
            return Unreadable(rec.id, str(e))
        return self.make_item(rec, pixels)


class _Repeated(Dataset):
    """`base` repeated to at least `n` items (index i -> i mod len(base))."""

    def __init__(self, base: Dataset, n: int) -> None:
        self.base, self.n = base, max(n, len(base))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int) -> Any:
        return self.base[idx % len(self.base)]


class TrainStream:
    """Endless micro-batches of `dataset` for one rank; state()/restore() as RecordsData."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        rank: int,
        world: int,
        seed: int,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
        num_workers: int = 0,
    ) -> None:
        self.n_train = len(dataset)
        self.dataset = _Repeated(dataset, batch_size * world)
        self.sampler = ResumableSampler(
            len(self.dataset), batch_size=batch_size, rank=rank, world=world, seed=seed
        )
        self.collate, self.workers, self.rank, self.seed = collate, num_workers, rank, seed
        self.epoch, self.micro = 0, 0

    def restore(self, client: dict[str, Any]) -> None:
        pos = client.get("data", {}).get(str(self.rank))
        if pos is None:
            raise DataError(
                f"checkpoint was written by {client.get('world_size')} ranks; fine-tuning "
                "resumes on the same number of ranks"
            )
        self.epoch, self.micro = pos["epoch"], pos["micro"]

    def state(self, world: int) -> dict[str, Any]:
        """Collective: every rank's position, for the checkpoint's client state."""
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, {"epoch": self.epoch, "micro": self.micro})
        return {"data": {str(r): p for r, p in enumerate(gathered)}}

    def batches(self) -> Iterator[dict[str, Any]]:
        while True:
            self.sampler.set_position(self.epoch, self.micro)
            key = np.random.SeedSequence([self.seed, self.rank, self.epoch, self.micro])
            gen = torch.Generator().manual_seed(int(key.generate_state(1, np.uint64)[0] >> 1))
            loader = DataLoader(
                self.dataset,
                batch_size=self.sampler.batch_size,
                sampler=self.sampler,
                collate_fn=self.collate,
                num_workers=self.workers,
                drop_last=True,
                generator=gen,
            )
            for batch in loader:
                self.micro += 1
                yield batch
            self.epoch, self.micro = self.epoch + 1, 0


class EvalBatches:
    """Batches of an evaluation dataset in record order; Unreadable items are left out of the
    batches and listed in .skipped as (id, reason) once iterated (a batch with none left is
    not yielded)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    ) -> None:
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=list)
        self.collate = collate
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = []
        for items in self.loader:
            good = []
            for item in items:
                if isinstance(item, Unreadable):
                    self.skipped.append((item.id, item.reason))
                else:
                    good.append(item)
            if good:
                yield self.collate(good)


def to_device(
    batch: dict[str, Any], device: torch.device, dtype: torch.dtype, image: Any
) -> dict[str, Any]:
    """Tensors to `device`; pixel_values through the device-side image transform, in `dtype`."""
    out = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if "pixel_values" in out:
        out["pixel_values"] = batch_transform(out["pixel_values"], image).to(dtype)
    return out


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype
