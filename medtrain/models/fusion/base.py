"""Fusion strategy interface, config and registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from medtrain.models.config import FusionConfig


class FusionOutput(NamedTuple):  # a tuple, so ZeRO-3's module output hooks can walk it
    text: Tensor  # (B, Lt, C) fused text states (MLM reads these)
    image: Tensor | None  # (B, Li, C) fused image states where the strategy updates them


class Fusion(nn.Module):
    """Base: image tokens are projected to the text width C, then strategy-specific layers run.

    forward(text (B, Lt, C), text_lens (B,), image (B, Li, Cv)) -> FusionOutput
    """

    def __init__(self, cfg: FusionConfig, text_dim: int, image_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def run_layer(self, layer: nn.Module, *args, **kwargs):
        if self.grad_checkpointing and self.training:
            return checkpoint(layer, *args, use_reentrant=False, **kwargs)
        return layer(*args, **kwargs)


FUSIONS: dict[str, type[Fusion]] = {}


def register_fusion(name: str) -> Callable[[type[Fusion]], type[Fusion]]:
    def deco(cls: type[Fusion]) -> type[Fusion]:
        FUSIONS[name] = cls
        return cls

    return deco


def build_fusion(cfg: FusionConfig, *, text_dim: int, image_dim: int, norm: type[nn.Module]):
    if cfg.name not in FUSIONS:
        raise ValueError(f"unknown fusion strategy {cfg.name!r}; valid: {sorted(FUSIONS)}")
    return FUSIONS[cfg.name](cfg, text_dim, image_dim, norm)
