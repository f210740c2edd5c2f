"""Transformer building blocks shared by the fusion strategies (pre-norm, residual).

Every attention call goes through the attention registry (medtrain.models.attention), so each
fusion strategy runs with every implementation (eager | sdpa | triton | auto).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medtrain.models.attention import get_attention


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention. `ctx=None` means self-attention over `x`."""

    def __init__(self, dim: int, num_heads: int, impl: str, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fusion hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attend = get_attention(impl)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _heads(self, t: Tensor) -> Tensor:  # (B, L, H*D) -> (B, H, L, D)
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: Tensor,  # (B, Lq, C)
        ctx: Tensor | None = None,  # (B, Lk, C)
        *,
        q_lens: Tensor | None = None,  # (B,)
        kv_lens: Tensor | None = None,  # (B,)
    ) -> Tensor:
        ctx = x if ctx is None else ctx
        q = self._heads(self.q(x))  # (B, H, Lq, D)
        k, v = (self._heads(t) for t in self.kv(ctx).chunk(2, dim=-1))  # (B, H, Lk, D)
        o = self.attend(q, k, v, q_lens=q_lens, kv_lens=kv_lens)  # (B, H, Lq, D)
        o = o.transpose(1, 2).reshape(x.shape)  # (B, Lq, C)
        return self.drop(self.out(o))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AttentionBlock(nn.Module):
    """x + Attn(LN(x), LN_ctx(ctx)); self-attention when called without ctx."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        impl: str,
        norm: type[nn.Module],
        *,
        cross: bool,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = norm(dim)
        self.norm_ctx = norm(dim) if cross else None
        self.attn = MultiHeadAttention(dim, num_heads, impl, dropout)

    def forward(
        self,
        x: Tensor,
        ctx: Tensor | None = None,
        *,
        q_lens: Tensor | None = None,
        kv_lens: Tensor | None = None,
    ) -> Tensor:
        c = None if self.norm_ctx is None else self.norm_ctx(ctx)
        return x + self.attn(self.norm(x), c, q_lens=q_lens, kv_lens=kv_lens)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, ratio: float, norm: type[nn.Module], dropout: float = 0.0):
        super().__init__()
        self.norm = norm(dim)
        self.mlp = MLP(dim, ratio, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(self.norm(x))


def lengths_from_mask(attention_mask: Tensor) -> Tensor:
    """(B, L) right-padded 0/1 mask -> (B,) int32 lengths."""
    return attention_mask.sum(dim=1).to(torch.int32)
