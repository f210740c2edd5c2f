"""Saving and finding checkpoints of one run: DeepSpeed's files plus medtrain's own state.

Inside a tag, medtrain/state.json holds the run-wide client state (rank 0 writes it: step, world
size, world-size-free data position, ...) and medtrain/rank<r>.json each rank's own state (RNG
states, MLM masking generator, records position): DeepSpeed saves `client_state` from one writer
only. Nothing of ours is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

from medtrain.train.checkpoint.gate import check_tag
from medtrain.train.errors import CheckpointError

OURS = "medtrain"


@dataclass
class Found:
    """A checkpoint tag chosen for resuming (after any fallback)."""

    tag: str
    step: int
    state: dict[str, Any]  # medtrain/state.json
    rank_state: dict[str, Any] | None  # this rank's medtrain/rank<r>.json; None if world changed
    saved_world: int
    universal: bool = False  # load through DeepSpeed's universal checkpoint (world size changed)
    notes: list[str] = field(default_factory=list)  # what fallback/conversion happened


def rank_file(rank: int) -> str:
    return f"rank{rank:05d}.json"


class CheckpointStore:
    """RUN/checkpoints of one run, seen from one rank (collective methods say so)."""

    def __init__(self, root: Path, *, rank: int, world: int, keep_last: int = 0) -> None:
        self.root, self.rank, self.world, self.keep_last = Path(root), rank, world, keep_last

    def has_checkpoint(self) -> bool:
        return (self.root / "latest").is_file()

    def find(self) -> Found | None:
        """The tag to resume from (None when there is none); every file passes the gate."""
        latest = self.root / "latest"
        if not latest.is_file():
            return None
        tag = latest.read_text().strip()
        folder = self.root / tag
        check_tag(folder)
        state = json.loads((folder / OURS / "state.json").read_text())
        mine = folder / OURS / rank_file(self.rank)
        same_world = state["world_size"] == self.world
        rank_state = json.loads(mine.read_text()) if same_world and mine.is_file() else None
        return Found(tag, int(state["step"]), state, rank_state, int(state["world_size"]))

    def ds_config_overrides(self, found: Found | None) -> dict[str, Any]:
        """What the DeepSpeed JSON needs to load `found` (universal loading when elastic)."""
        return {"checkpoint": {"load_universal": True}} if found and found.universal else {}

    def load(self, engine: Any, found: Found) -> None:
        """Collective: load model, optimizer and scheduler state of `found` into `engine`."""
        path, _ = engine.load_checkpoint(str(self.root), tag=found.tag)
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load {self.root / found.tag}")

    def save(self, engine: Any, *, step: int, state: dict, rank_state: dict) -> str:
        """Collective: write tag step<k> with DeepSpeed's files, state.json (rank 0) and every
        rank's rank<r>.json, then point `latest` at it. Returns the tag."""
        tag = f"step{step}"
        engine.save_checkpoint(str(self.root), tag=tag, client_state={}, save_latest=False)
        ours = self.root / tag / OURS
        ours.mkdir(parents=True, exist_ok=True)
        (ours / rank_file(self.rank)).write_text(json.dumps(rank_state))
        if self.rank == 0:
            (ours / "state.json").write_text(json.dumps({**state, "step": step}))
        dist.barrier()
        if self.rank == 0:
            (self.root / "latest").write_text(tag)
        dist.barrier()
        return tag
