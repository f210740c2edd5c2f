"""Saving and finding checkpoints of one run: DeepSpeed's files plus medtrain's own state.

Inside a tag, medtrain/state.json holds the run-wide client state (rank 0 writes it: step, world
size, world-size-free data position, ...) and medtrain/rank<r>.json each rank's own state (RNG
states, MLM masking generator, records position): DeepSpeed saves `client_state` from one writer
only. Nothing of ours is pickled. medtrain/complete.json, written last, lists every file of the
tag with its size: a tag without it (or whose files disagree with it) is never resumed from.

Publishing is atomic on a POSIX filesystem that every rank sees (a shared filesystem across
nodes is assumed, as DeepSpeed's own checkpointing assumes): every rank writes into
.partial-step<k>/ and fsyncs its own files, rank 0 writes the completion record after a barrier,
renames the folder to step<k>, fsyncs the parent and only then replaces `latest` (tmp + fsync +
os.replace). A crash at any point leaves either the previous `latest` or a complete new tag.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtrain.train.checkpoint.gate import ForeignGlobalError, check_tag, weights_only_loads
from medtrain.train.checkpoint.universal import universal_tag
from medtrain.train.errors import CheckpointError, UnsafeCheckpointError

OURS = "medtrain"
COMPLETE = "complete.json"
PARTIAL = ".partial-"
TAG = re.compile(r"^step(\d+)$")
_PP_RANK = re.compile(r"pp_rank_(\d+)_")


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
    load_tag: str = ""  # the folder DeepSpeed loads: tag, or <tag>_universal when universal

    def __post_init__(self) -> None:
        self.load_tag = self.load_tag or self.tag


@dataclass
class TagInfo:
    """One step<k> folder as `medtrain ckpt list` shows it."""

    tag: str
    step: int
    complete: bool
    why: str  # "" when complete, else why it cannot be resumed from
    world: int | None  # ranks that wrote it (None when its state.json is unreadable)
    partitioned: bool  # ZeRO-1/2/3 optimizer shards (needs universal conversion on a new world)
    universal: bool  # a converted <tag>_universal folder exists


def rank_file(rank: int) -> str:
    return f"rank{rank:05d}.json"


def is_partitioned(folder: Path) -> bool:
    """ZeRO-1/2/3 tags hold per-rank optimizer shards; ZeRO-0 keeps it all in mp_rank files."""
    return any(Path(folder).glob("*zero_pp_rank_*_optim_states.pt"))


def _collective_device() -> Any:
    """The device an object collective stages through: this rank's own GPU under NCCL (find()
    runs before the engine picks the device, and torch would use cuda:0 on every rank)."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """path <- text: a temporary file in the same folder, fsynced, os.replace'd, folder fsynced."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def tag_files(folder: Path) -> dict[str, int]:
    """relative path -> size of every file of a tag except the completion record."""
    skip = Path(OURS) / COMPLETE
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder) != skip
    }


def verify_tag(folder: Path) -> str:
    """'' when `folder` is a complete tag whose files pass the gate, else why not (one line).
    A file naming a global outside the allowlist raises (ForeignGlobalError): never a fallback."""
    if not folder.is_dir():
        return "missing"
    record = folder / OURS / COMPLETE
    if not record.is_file():
        return f"incomplete: no completion record {OURS}/{COMPLETE} (interrupted save?)"
    try:
        files = json.loads(record.read_text())["files"]
        json.loads((folder / OURS / "state.json").read_text())
    except (ValueError, KeyError, OSError) as exc:
        return f"corrupt {OURS}/ record or state ({type(exc).__name__}: {exc})"
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file():
            return f"incomplete: {rel} is missing"
        if path.stat().st_size != size:
            return f"corrupt: {rel} has {path.stat().st_size} bytes, the record says {size}"
        if rel.endswith(".json"):
            try:
                json.loads(path.read_text())
            except ValueError:
                return f"corrupt: {rel} is not valid JSON"
    try:
        check_tag(folder)
    except ForeignGlobalError:
        raise
    except UnsafeCheckpointError as exc:
        return f"corrupt: {exc}"
    return ""


class CheckpointStore:
    """RUN/checkpoints of one run, seen from one rank (collective methods say so)."""

    def __init__(self, root: Path, *, rank: int, world: int, keep_last: int = 0) -> None:
        self.root, self.rank, self.world, self.keep_last = Path(root), rank, world, keep_last

    # ------------------------------------------------------------------ inspection

    def tags(self) -> list[tuple[int, str]]:
        """(step, tag) of every step<k> folder, newest first (complete or not)."""
        if not self.root.is_dir():
            return []
        found = [(int(m[1]), p.name) for p in self.root.iterdir() if (m := TAG.match(p.name))]
        return sorted(found, reverse=True)

    def has_checkpoint(self) -> bool:
        return (self.root / "latest").is_file() or bool(self.tags())

    def latest(self) -> str | None:
        path = self.root / "latest"
        return path.read_text().strip() or None if path.is_file() else None

    def describe(self) -> list[TagInfo]:
        """Every step<k> folder with its completeness (gate included), newest first."""
        out = []
        for step, tag in self.tags():
            folder = self.root / tag
            try:
                why = verify_tag(folder)
            except ForeignGlobalError as exc:
                why = f"unsafe: {exc}"
            try:
                world = int(json.loads((folder / OURS / "state.json").read_text())["world_size"])
            except (ValueError, KeyError, OSError):
                world = None
            universal = (self.root / universal_tag(tag)).is_dir()
            out.append(TagInfo(tag, step, not why, why, world, is_partitioned(folder), universal))
        return out

    def choose(self, tag: str | None = None) -> tuple[str, list[str]]:
        """(usable tag, notes): `tag` itself when given (refused if unusable), else what `latest`
        names, falling back to the newest complete tag. Raises CheckpointError (unsafe files:
        UnsafeCheckpointError) when nothing is usable, FileNotFoundError when nothing exists."""
        if tag is not None:
            why = verify_tag(self.root / tag)
            if why:
                raise CheckpointError(f"checkpoint {self.root / tag} is not usable: {why}")
            return tag, []
        named = self.latest()
        tags = [t for _, t in self.tags()]
        if named is None and not tags:
            raise FileNotFoundError(f"no checkpoint under {self.root}")
        notes, tried = [], []
        if named is not None:
            why = verify_tag(self.root / named)
            if not why:
                return named, []
            tried.append(f"{named}: {why}")
            notes.append(f"checkpoint: `latest` names {named}, which is {why}")
        else:
            notes.append(f"checkpoint: no `latest` file under {self.root}")
        for other in tags:
            if other == named:
                continue
            why = verify_tag(self.root / other)
            if not why:
                notes.append(f"checkpoint: falling back to {other}, the newest complete tag")
                return other, notes
            tried.append(f"{other}: {why}")
        raise CheckpointError(f"no usable checkpoint under {self.root} (" + "; ".join(tried) + ")")

    # ------------------------------------------------------------------ resume

    def _decide(self) -> dict[str, Any] | None:
        """Rank 0: the tag to resume from, converting it to a universal checkpoint when the
        world size changed under ZeRO-1/2/3 (once; the converted folder is reused)."""
        try:
            tag, notes = self.choose()
        except FileNotFoundError:
            return None
        state = json.loads((self.root / tag / OURS / "state.json").read_text())
        saved = int(state["world_size"])
        universal = saved != self.world and is_partitioned(self.root / tag)
        load_tag = tag
        if universal:
            from medtrain.train.checkpoint.universal import ensure_universal

            load_tag, note = ensure_universal(self.root, tag)
            notes.append(note)
        return {"tag": tag, "load_tag": load_tag, "universal": universal, "notes": notes}

    def find(self) -> Found | None:
        """Collective when distributed: the tag to resume from (None when there is none).

        Rank 0 chooses (every file passes the gate; `latest` falls back to the newest complete
        tag; elastic conversion) and tells the others, so all ranks load the same tag. With a
        universal conversion the other ranks wait in that broadcast: it must finish within the
        collective timeout (convert big checkpoints beforehand with `medtrain ckpt universal`).
        """
        import torch.distributed as dist

        shared = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        decision: Any = None
        if self.rank == 0:
            try:
                decision = self._decide()
            except CheckpointError as exc:
                decision = {"error": str(exc), "unsafe": isinstance(exc, UnsafeCheckpointError)}
        if shared:
            box = [decision]
            dist.broadcast_object_list(box, src=0, device=_collective_device())
            decision = box[0]
        if decision is None:
            return None
        if "error" in decision:
            kind = UnsafeCheckpointError if decision["unsafe"] else CheckpointError
            raise kind(decision["error"])
        folder = self.root / decision["tag"]
        state = json.loads((folder / OURS / "state.json").read_text())
        saved = int(state["world_size"])
        mine = folder / OURS / rank_file(self.rank)
        rank_state = json.loads(mine.read_text()) if saved == self.world else None
        return Found(
            decision["tag"],
            int(state["step"]),
            state,
            rank_state,
            saved,
            universal=decision["universal"],
            notes=decision["notes"],
            load_tag=decision["load_tag"],
        )

    def ds_config_overrides(self, found: Found | None) -> dict[str, Any]:
        """What the DeepSpeed JSON needs to load `found` (universal loading when elastic)."""
        return {"checkpoint": {"load_universal": True}} if found and found.universal else {}

    def load(self, engine: Any, found: Found) -> None:
        """Collective: load model, optimizer and scheduler state of `found` into `engine` (its
        files passed the gate in find())."""
        with weights_only_loads():  # DeepSpeed passes weights_only=False: forced, allowlisted
            path, _ = engine.load_checkpoint(str(self.root), tag=found.load_tag)
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load {self.root / found.load_tag}")

    # ------------------------------------------------------------------ save

    def _fsync_own_files(self, folder: Path) -> None:
        """fsync what this rank wrote: files of its pp_rank (rank 0 also the unranked ones)."""
        for path in folder.glob("*.pt"):
            m = _PP_RANK.search(path.name)
            if (int(m[1]) if m else 0) == self.rank:
                _fsync(path)

    def save(self, engine: Any, *, step: int, state: dict, rank_state: dict) -> str:
        """Collective: write tag step<k> atomically (see the module docstring), point `latest`
        at it, apply keep-last-K retention. Returns the tag."""
        import torch.distributed as dist

        tag = f"step{step}"
        partial = self.root / f"{PARTIAL}{tag}"
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # a crashed save of the same step
        dist.barrier()
        engine.save_checkpoint(str(self.root), tag=partial.name, client_state={}, save_latest=False)
        ours = partial / OURS
        ours.mkdir(parents=True, exist_ok=True)
        mine = ours / rank_file(self.rank)
        mine.write_text(json.dumps(rank_state))
        _fsync(mine)
        self._fsync_own_files(partial)
        dist.barrier()  # every rank's files are written and durable
        if self.rank == 0:
            self._publish(partial, tag, {**state, "step": step})
        dist.barrier()  # nobody leaves before `latest` names the new tag
        return tag

    def _publish(self, partial: Path, tag: str, state: dict) -> None:
        """Rank 0: completion record, rename, `latest`, retention, stale partials."""
        ours = partial / OURS
        (ours / "state.json").write_text(json.dumps(state))
        _fsync(ours / "state.json")
        record = {"tag": tag, "step": state["step"], "world_size": state.get("world_size")}
        record["files"] = tag_files(partial)
        write_atomic(ours / COMPLETE, json.dumps(record, indent=1))
        _fsync(ours)
        _fsync(partial)
        final = self.root / tag
        if final.exists():  # re-saving a step (e.g. a resumed run saving its start step)
            old = self.root / f"{PARTIAL}old-{tag}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old)
        shutil.rmtree(self.root / universal_tag(tag), ignore_errors=True)  # stale conversion
        os.replace(partial, final)
        _fsync(self.root)
        write_atomic(self.root / "latest", tag)
        self.retain(keep=tag)
        for stale in self.root.glob(f"{PARTIAL}*"):
            shutil.rmtree(stale, ignore_errors=True)

    def retain(self, keep: str) -> list[str]:
        """Delete complete tags beyond the newest train.keep_last (0 = keep all) and their
        universal conversions; never `keep` (just written) nor the newest complete tag.
        Incomplete step folders are left for inspection. -> deleted tags."""
        if self.keep_last <= 0:
            return []
        complete = [t for _, t in self.tags() if (self.root / t / OURS / COMPLETE).is_file()]
        protected = set(complete[: self.keep_last]) | {keep} | set(complete[:1])
        deleted = []
        for t in complete:
            if t not in protected:
                shutil.rmtree(self.root / universal_tag(t), ignore_errors=True)
                shutil.rmtree(self.root / t)
                deleted.append(t)
        return deleted
