"""Attention-implementation registry: every fusion layer calls attention through here.

All implementations share the fused kernel's signature and padding semantics:

    attend(q, k, v, *, q_lens=None, kv_lens=None, scale=None) -> o
    q (B, H, Lq, D), k/v (B, H, Lk, D), o (B, H, Lq, D)

Padding is always on the right. Keys at positions >= kv_lens[b] are ignored; query rows at
positions >= q_lens[b] are written as zeros (they contribute nothing downstream and receive zero
gradient). A row with kv_lens[b] == 0 has no valid key and is zero as well.

`eager` is the padding-aware math reference (kernels/attention/reference.py) itself. `triton`
(the fused kernel in medtrain.kernels.attention) is imported on its first call, so machines
without triton or a GPU import this module fine; `auto` picks triton for CUDA tensors (when
triton is installed) and sdpa otherwise. Whether triton can run is medtrain.kernels.runtime's
answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from medtrain.kernels import runtime
from medtrain.kernels.attention.reference import cross_attention_reference

AttentionFn = Callable[..., Tensor]
ATTENTION_IMPLS: dict[str, AttentionFn] = {}


def register_attention(name: str) -> Callable[[AttentionFn], AttentionFn]:
    def deco(fn: AttentionFn) -> AttentionFn:
        ATTENTION_IMPLS[name] = fn
        return fn

    return deco


def get_attention(name: str) -> AttentionFn:
    """The implementation registered under `name`; ValueError listing the valid names."""
    if name not in ATTENTION_IMPLS:
        raise ValueError(
            f"unknown attention implementation {name!r}; valid: {sorted(ATTENTION_IMPLS)}"
        )
    return ATTENTION_IMPLS[name]


def _length_mask(lens: Tensor | None, length: int, device: torch.device) -> Tensor | None:
    """(B,) lengths -> (B, length) bool, True at valid positions; None means all valid."""
    if lens is None:
        return None
    return torch.arange(length, device=device)[None, :] < lens.to(device)[:, None]


def _zero_invalid_rows(o: Tensor, q_valid: Tensor | None, kv_lens: Tensor | None) -> Tensor:
    """Zero query rows past q_len and rows that have no valid key at all."""
    rows = q_valid  # (B, Lq) or None
    if kv_lens is not None:
        has_key = (kv_lens.to(o.device) > 0)[:, None].expand(o.shape[0], o.shape[2])
        rows = has_key if rows is None else rows & has_key
    if rows is None:
        return o
    return o * rows[:, None, :, None].to(o.dtype)


@register_attention("eager")
def eager_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_lens: Tensor | None = None,
    kv_lens: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Math reference (kernels/attention/reference.py): fp32 softmax, output in the input dtype."""
    o = cross_attention_reference(q, k, v, q_lens=q_lens, kv_lens=kv_lens, scale=scale)
    return o.to(q.dtype)  # (B, H, Lq, D)


@register_attention("sdpa")
def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_lens: Tensor | None = None,
    kv_lens: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention (flash / efficient / math backends)."""
    mask = None
    kv_valid = _length_mask(kv_lens, k.shape[2], q.device)
    if kv_valid is not None:
        # Rows without any valid key: let them see everything (finite), zeroed afterwards.
        kv_valid = kv_valid | ~kv_valid.any(-1, keepdim=True)
        mask = kv_valid[:, None, None, :]  # (B, 1, 1, Lk), True = attend
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return _zero_invalid_rows(o, _length_mask(q_lens, q.shape[2], q.device), kv_lens)


@register_attention("triton")
def triton_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_lens: Tensor | None = None,
    kv_lens: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Fused Triton kernel (medtrain.kernels.attention); CUDA, or CPU in Triton's interpreter."""
    reason = runtime.triton_unavailable(q.device.type)
    if reason is not None:
        raise RuntimeError(
            f"attention implementation 'triton' cannot run on {q.device}: {reason}. "
            "Use attn_impl 'sdpa' (or 'eager', or 'auto'); on CPU, TRITON_INTERPRET=1 set "
            "before the first triton call runs the kernel in Triton's interpreter (slow; meant "
            "for tests)."
        )
    from medtrain.kernels.attention.op import cross_attention

    return cross_attention(q, k, v, q_lens=q_lens, kv_lens=kv_lens, scale=scale)


@register_attention("auto")
def auto_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_lens: Tensor | None = None,
    kv_lens: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """triton for CUDA tensors when triton is installed, sdpa otherwise."""
    attend = triton_attention if q.is_cuda and runtime.triton_installed() else sdpa_attention
    return attend(q, k, v, q_lens=q_lens, kv_lens=kv_lens, scale=scale)
