"""Loss configuration (light: no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

CONTRASTIVE_NAMES = ("auto", "reference", "cpp", "triton")  # = contrastive registry (tested)


@dataclass(kw_only=True, slots=True)
class LossConfig:
    """Weights of the loss terms and the contrastive implementation."""

    contrastive_weight: float = 1.0
    mlm_weight: float = 1.0
    contrastive_impl: str = "auto"  # auto | reference | cpp | triton

    def __post_init__(self) -> None:
        for name in ("contrastive_weight", "mlm_weight"):
            if not math.isfinite(getattr(self, name)):  # nan < 0 is False: checked first
                raise ValueError(f"loss.{name} must be a finite number, got {getattr(self, name)}")
        if self.contrastive_weight < 0 or self.mlm_weight < 0:
            raise ValueError(
                "loss weights must be >= 0, got "
                f"contrastive_weight={self.contrastive_weight}, mlm_weight={self.mlm_weight}"
            )
        if self.contrastive_weight == 0 and self.mlm_weight == 0:
            raise ValueError("at least one of loss.contrastive_weight, loss.mlm_weight must be > 0")
        if self.contrastive_impl not in CONTRASTIVE_NAMES:
            raise ValueError(
                f"loss.contrastive_impl must be one of {list(CONTRASTIVE_NAMES)}, "
                f"got {self.contrastive_impl!r}"
            )
