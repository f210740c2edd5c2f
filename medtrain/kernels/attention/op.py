"""torch.library ops: medtrain::cross_attention (-> o, lse) and its backward op, and
`cross_attention`, the checked Python entry over them.

Both are opaque to torch.compile (fake kernels give shapes) and carry FLOP formulas for
torch.utils.flop_counter.FlopCounterMode: forward 4*B*H*Lq*Lk*D (two matmuls, QK^T and PV),
backward 2.5x that (five: recomputed QK^T, dV, dP, dK, dQ). Counts are dense: padding is not
subtracted, as for PyTorch's own attention ops.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from medtrain.kernels.attention.function import CrossAttentionFunction
from medtrain.kernels.attention.triton_bwd import attention_backward


@torch.library.custom_op("medtrain::cross_attention", mutates_args=())
def cross_attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_lens: Tensor | None,
    kv_lens: Tensor | None,
    scale: float,
) -> tuple[Tensor, Tensor]:
    return CrossAttentionFunction.forward(q, k, v, q_lens, kv_lens, scale)


@cross_attention_op.register_fake
def _(q, k, v, q_lens, kv_lens, scale):
    B, H, Lq, _ = q.shape
    return torch.empty_like(q), q.new_empty((B, H, Lq), dtype=torch.float32)


@torch.library.custom_op("medtrain::cross_attention_backward", mutates_args=())
def cross_attention_backward_op(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    q_lens: Tensor | None,
    kv_lens: Tensor | None,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    return attention_backward(do, q, k, v, o, lse, q_lens, kv_lens, scale)


@cross_attention_backward_op.register_fake
def _(do, q, k, v, o, lse, q_lens, kv_lens, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _backward(ctx, do: Tensor, _dlse: Tensor | None):
    q, k, v, o, lse, q_lens, kv_lens = ctx.saved_tensors
    dq, dk, dv = torch.ops.medtrain.cross_attention_backward(
        do, q, k, v, o, lse, q_lens, kv_lens, ctx.scale
    )
    return dq, dk, dv, None, None, None


cross_attention_op.register_autograd(_backward, setup_context=CrossAttentionFunction.setup_context)


def attention_flops(q_shape, k_shape) -> int:
    """Dense forward FLOPs: QK^T and PV, 2 * B*H*Lq*Lk*D each."""
    B, H, Lq, D = q_shape
    return 4 * B * H * Lq * k_shape[2] * D


@register_flop_formula(torch.ops.medtrain.cross_attention)
def _fwd_flops(q_shape, k_shape, *args, out_shape=None, **kwargs) -> int:
    return attention_flops(q_shape, k_shape)


@register_flop_formula(torch.ops.medtrain.cross_attention_backward)
def _bwd_flops(do_shape, q_shape, k_shape, *args, out_shape=None, **kwargs) -> int:
    return 5 * attention_flops(q_shape, k_shape) // 2


def cross_attention(
    q: Tensor,  # (B, H, Lq, D)
    k: Tensor,  # (B, H, Lk, D)
    v: Tensor,  # (B, H, Lk, D)
    *,
    q_lens: Tensor | None = None,  # (B,) valid query rows per sample (right padding)
    kv_lens: Tensor | None = None,  # (B,) valid keys per sample (right padding)
    scale: float | None = None,  # default 1/sqrt(D)
) -> Tensor:
    """softmax(q k^T * scale) v over valid keys; rows past q_len (or with no key) are zeros.

    Returns O (B, H, Lq, D) in q's dtype. q, k, v must share a dtype (fp32, fp16, bf16) and device.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"expected 4-D (B, H, L, D) q/k/v, got {q.shape}, {k.shape}, {v.shape}")
    B, H, _, D = q.shape
    if k.shape != v.shape or k.shape[:2] != (B, H) or k.shape[3] != D:
        raise ValueError(f"q {tuple(q.shape)} / k {tuple(k.shape)} / v {tuple(v.shape)} mismatch")
    if B * H > 65535:  # grid axis 1 limit
        raise ValueError(f"B * H = {B * H} exceeds 65535; split the batch")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q/k/v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    o, _ = cross_attention_op(q, k, v, q_lens, kv_lens, scale)
    return o
