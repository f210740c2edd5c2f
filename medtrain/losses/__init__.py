"""Training losses.

config.py      LossConfig (light, no torch)
objectives.py  contrastive (through kernels.contrastive.dispatch), MLM, the weighted composite

The objectives are imported on first attribute access, so `medtrain.losses.config` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from medtrain.losses.config import LossConfig

__all__ = [
    "LossConfig",
    "compute_losses",
    "contrastive_loss",
    "mlm_loss",
    "resolve_contrastive_impl",
]


def __getattr__(name: str) -> Any:
    objectives = importlib.import_module("medtrain.losses.objectives")
    try:
        return getattr(objectives, name)
    except AttributeError:
        raise AttributeError(f"module 'medtrain.losses' has no attribute {name!r}") from None
