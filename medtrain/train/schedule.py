"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, *, total: int, warmup_fraction: float, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    warmup = int(total * warmup_fraction)
    if step < warmup:
        return (step + 1) / warmup  # linear (DeepSpeed's WarmupCosineLR defaults to log)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, total: int, warmup_fraction: float, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total=total, warmup_fraction=warmup_fraction, min_ratio=min_ratio),
    )
