"""The one gate every checkpoint file passes before DeepSpeed, zero_to_fp32, the universal
conversion or our loader unpickles it (they all call torch.load(weights_only=False)).

Each `*.pt` file is opened with torch.load(weights_only=True) and an explicit allowlist of the
classes DeepSpeed's files need; anything else refuses the whole tag, naming the file and the
global, before any code in it can run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medtrain.train.errors import UnsafeCheckpointError


def allowlist() -> list[type]:
    """The non-tensor classes DeepSpeed's checkpoint files hold."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    return [LossScaler, ZeroStageEnum]


def check_file(path: Path) -> None:
    """Refuse `path` unless it unpickles with weights_only=True and the allowlist."""
    try:
        with torch.serialization.safe_globals(allowlist()):
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - every failure refuses the file
        raise UnsafeCheckpointError(
            f"refusing checkpoint file {path}: not loadable as weights only ({exc})"
        ) from None


def check_tag(folder: Path) -> None:
    """Gate every `*.pt` file of one checkpoint tag (recursively)."""
    for path in sorted(Path(folder).rglob("*.pt")):
        check_file(path)
