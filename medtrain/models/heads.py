"""Heads: projections to the shared embedding, learnable logit scale, MLM head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Projection(nn.Module):
    """(B, C) -> (B, E), L2-normalized."""

    def __init__(self, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.proj(x).float(), dim=-1)


class LogitScale(nn.Module):
    """Learnable temperature stored as log(s); s = exp(.) clamped at `max_scale`."""

    def __init__(self, init: float = 1 / 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        # Shape (1,), not (): DeepSpeed's parameter broadcast cannot view 0-d bf16 tensors.
        self.log_scale = nn.Parameter(torch.full((1,), math.log(init)))
        self.max_scale = max_scale

    def forward(self) -> Tensor:
        return self.log_scale.float().exp().clamp(max=self.max_scale).squeeze(0)  # ()


class MLMHead(nn.Module):
    """BERT-style transform + decoder. Called on the gathered masked positions only: (M, C) ->
    (M, V). The decoder is not tied to the word embeddings so that ZeRO-3 never needs a
    parameter of another module."""

    def __init__(self, dim: int, vocab_size: int, norm: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), norm(dim))
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, h: Tensor) -> Tensor:
        return self.decoder(self.transform(h))
