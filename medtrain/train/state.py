"""Per-rank training state that DeepSpeed does not save: RNG streams, as JSON-able dicts.

Saved into the checkpoint tag as medtrain/rank<r>.json by every rank (checkpoint/store.py),
beside the MLM masker's generator and the data position (train/loop.py builds that dict).
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _tensor(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """python, numpy, torch (CPU) and accelerator RNG states of this process."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = _b64(torch.cuda.get_rng_state())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_tensor(state["cuda"]))


def reseed(seed: int, rank: int, step: int) -> None:
    """Deterministic python/numpy/torch (and accelerator) seeds from (seed, rank, step): the
    fallback when a checkpoint holds no RNG state for this rank (the world size changed)."""
    mixed = (seed * 1_000_003 + rank * 7919 + step * 104_729) % 2**31
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)  # also seeds every CUDA device
