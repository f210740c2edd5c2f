"""Heads: text pooling, projections to the shared embedding, learnable logit scale, MLM head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtrain.models.config import TEXT_POOLS


def pool_text(hidden: Tensor, attention_mask: Tensor, how: str = "cls") -> Tensor:
    """Text states (B, L, C) -> one vector per text (B, C).

    "cls": the first ([CLS]) state, BERT's convention. "mean": the mean over the real tokens
    (attention_mask 1), CLS and SEP included. A text tower trained from scratch has a CLS state
    that is the same for every text at initialization (post-LN BERT, 0.02-std init: cosine
    1.0000 between any two reports on the tiny preset), so a contrastive loss on it starts at
    chance, ln(B), and stays there until the tower learns to route content into CLS; the mean of
    the token states differs between texts from the first step.
    """
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = attention_mask[..., None].to(hidden.dtype)  # (B, L, 1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
    raise ValueError(f"text pooling must be one of {list(TEXT_POOLS)}, got {how!r}")


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
