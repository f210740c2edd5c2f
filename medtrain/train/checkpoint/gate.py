"""The one gate every checkpoint file passes before DeepSpeed's engine load, zero_to_fp32, the
universal conversion or our loader reads it, and the weights-only mode those reads run in.

DeepSpeed's readers call torch.load(weights_only=False). `weights_only_loads()` is the context
they run in (store.load, load.fp32_state_dict, universal.convert): it sets torch's
TORCH_FORCE_WEIGHTS_ONLY_LOAD, which torch.load reads on every call and which overrides the
caller's weights_only=False, with the allowlist below as safe globals. So the load itself can run
no code even when a file is swapped after the gate checked it; the gate's scan (check_tag) comes
first to refuse a tag as a whole, name the foreign global, and tell tampering from damage.

Each `*.pt` file is opened with torch.load(weights_only=True, mmap=True) inside
torch.serialization.safe_globals(ALLOWLIST); anything else refuses the whole tag with an
UnsafeCheckpointError naming the file and the global, before any code in it can run. Callers:
store.py (`--resume`, fallback, elastic conversion), universal.py (`medtrain ckpt universal`),
load.py (`medtrain eval`, load_run, fp32_state_dict: the entry point for exporting weights).

ALLOWLIST, found by saving DeepSpeed 0.19 engines (ZeRO-0/1/2/3 x fp32/bf16, 1 and 2 ranks) and
converting ZeRO-1/2/3 tags to universal checkpoints, then listing each file's globals with
torch.serialization.get_unsafe_globals_in_checkpoint:
    ZeRO-0 (mp_rank_*_model_states.pt, optimizer inside)          nothing beyond tensors
    ZeRO-1/2 *zero_pp_rank_*_optim_states.pt                       LossScaler, ZeroStageEnum,
                                                                  fragment_address
    ZeRO-3 *zero_pp_rank_*_optim_states.pt                         LossScaler, ZeroStageEnum
    universal <tag>_universal/zero/optimizer_state.pt              LossScaler, ZeroStageEnum
    model_states files and universal zero/<param>/*.pt              nothing beyond tensors
"""

from __future__ import annotations

import contextlib
import os
import pickle
import pickletools
import zipfile
from collections.abc import Iterator
from pathlib import Path

from medtrain.train.errors import UnsafeCheckpointError

FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"  # read by torch.load at every call

# Fully qualified names, for messages and the test that each one is still needed.
ALLOWED = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class ForeignGlobalError(UnsafeCheckpointError):
    """A checkpoint file names a class outside the allowlist: tampering, not a torn write, so
    resuming refuses the run instead of falling back to an older tag."""


def allowlist() -> list[type]:
    """The non-tensor classes DeepSpeed's checkpoint files hold (see the module docstring)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every torch.load inside (this process; DeepSpeed's included, whatever weights_only it
    passes) loads weights only, with the allowlist as the only non-tensor classes."""
    import torch

    before = os.environ.get(FORCE_WEIGHTS_ONLY)
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    try:
        with torch.serialization.safe_globals(allowlist()):
            yield
    finally:
        if before is None:
            os.environ.pop(FORCE_WEIGHTS_ONLY, None)
        else:
            os.environ[FORCE_WEIGHTS_ONLY] = before


def _pickle_globals(f) -> set[str]:
    """module.name of every GLOBAL / INST / STACK_GLOBAL of one pickle (any protocol) read from
    `f` by opcode, nothing executed; STACK_GLOBAL takes the last two strings pushed (close
    enough to refuse: any name outside the allowlist refuses the file)."""
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(f):
        if op.name in ("GLOBAL", "INST"):
            names.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]) if len(strings) >= 2 else "<unknown>")
        elif isinstance(arg, str):
            strings.append(arg)
    return names


def _foreign_globals(path: Path) -> list[str]:
    """Globals the pickle(s) inside `path` name that the allowlist does not hold, read from the
    opcodes (nothing executed). A torch zip archive: its data.pkl. A bare pickle (a legacy
    torch.save or pickle.dump file, which DeepSpeed never writes): each pickle in a row until
    one does not parse. [] for anything else (the load below then reports the damage)."""
    import torch
    from torch import _weights_only_unpickler as wou

    with open(path, "rb") as f:
        head = f.read(2)
    names: set[str] = set()
    if head[:1] == b"\x80":  # pickle PROTO opcode
        with open(path, "rb") as f:
            while True:
                try:
                    names |= _pickle_globals(f)
                except Exception:  # noqa: BLE001 - end of the pickles (or raw storage bytes)
                    break
    elif head == b"PK":
        try:
            names = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - a damaged archive: the load below reports it
            return []
    allowed = set(ALLOWED) | set(wou._get_allowed_globals())
    return sorted(n for n in names if n not in allowed)


def check_file(path: Path) -> None:
    """Refuse `path` unless it unpickles with weights_only=True and the allowlist."""
    import torch

    path = Path(path)
    foreign = _foreign_globals(path)
    if foreign:  # refuse before torch.load is even tried on it
        raise ForeignGlobalError(
            f"refusing checkpoint file {path}: it names {', '.join(foreign)}, not an allowed "
            "checkpoint class (weights-only loading; the file may be malicious)"
        )
    try:
        with torch.serialization.safe_globals(allowlist()):
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(
            f"refusing checkpoint file {path}: not loadable as weights only ({first})"
        ) from None


def check_tag(folder: Path) -> int:
    """Gate every `*.pt` file of one checkpoint tag folder (recursively); -> files checked."""
    files = sorted(Path(folder).rglob("*.pt"))
    for path in files:
        check_file(path)
    return len(files)
