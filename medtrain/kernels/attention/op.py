"""torch.library ops: medtrain::cross_attention (-> o, lse) and its backward op.

Both are opaque to torch.compile (fake kernels give shapes) and carry FLOP formulas for
torch.utils.flop_counter.FlopCounterMode: forward 4*B*H*Lq*Lk*D (two matmuls, QK^T and PV),
backward 2.5x that (five: recomputed QK^T, dV, dP, dK, dQ). Counts are dense: padding is not
subtracted, as for PyTorch's own attention ops.
"""

from __future__ import annotations

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
