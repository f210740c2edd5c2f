"""Fused cross-modal attention (Triton): forward and backward with right-padding lengths.

Layers: triton_fwd.py / triton_bwd.py (kernels + launchers) -> function.py
(torch.autograd.Function) -> op.py (torch.library op medtrain::cross_attention, compile- and
FlopCounterMode-visible) -> `cross_attention` below. reference.py is the fp32 math reference.
Semantics match medtrain.models.attention (see its docstring). Importing this package needs
triton; on CPU the kernels run only under TRITON_INTERPRET=1, set before this import.
"""

from __future__ import annotations

import math

from torch import Tensor

from medtrain.kernels.attention.function import CrossAttentionFunction
from medtrain.kernels.attention.op import attention_flops, cross_attention_op
from medtrain.kernels.attention.reference import cross_attention_reference

__all__ = [
    "CrossAttentionFunction",
    "attention_flops",
    "cross_attention",
    "cross_attention_op",
    "cross_attention_reference",
]


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
