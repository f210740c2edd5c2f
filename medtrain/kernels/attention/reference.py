"""fp32 math reference for cross_attention, with the kernel's padding semantics.

The one copy of the masked-softmax math: the attention registry's "eager" implementation
(medtrain.models.attention) is this function with the output cast back to the input dtype.
Imports torch only (no triton).

Keys at positions >= kv_lens[b] are ignored; query rows at positions >= q_lens[b] are zeros;
a sample with kv_lens[b] == 0 is all zeros. Differentiable (plain torch ops), so tests take the
reference gradients from autograd. Computes in `compute_dtype` (fp32 by default; tests also run
it in the input dtype to measure PyTorch's own low-precision error).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cross_attention_reference(
    q: Tensor,  # (B, H, Lq, D)
    k: Tensor,  # (B, H, Lk, D)
    v: Tensor,  # (B, H, Lk, D)
    *,
    q_lens: Tensor | None = None,  # (B,)
    kv_lens: Tensor | None = None,  # (B,)
    scale: float | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Returns O (B, H, Lq, D) in `compute_dtype`."""
    B, _, Lq, D = q.shape
    Lk = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v = (t.to(compute_dtype) for t in (q, k, v))
    s = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, Lq, Lk)
    keep_row = torch.ones(B, Lq, dtype=torch.bool, device=q.device)  # (B, Lq)
    if kv_lens is not None:
        kv_lens = kv_lens.to(q.device)
        key_ok = torch.arange(Lk, device=q.device)[None, :] < kv_lens[:, None]  # (B, Lk)
        # A sample without keys gets a harmless all-visible row, zeroed below.
        key_ok = key_ok | (kv_lens <= 0)[:, None]
        s = s.masked_fill(~key_ok[:, None, None, :], float("-inf"))
        keep_row &= (kv_lens > 0)[:, None]
    if q_lens is not None:
        keep_row &= torch.arange(Lq, device=q.device)[None, :] < q_lens.to(q.device)[:, None]
    p = torch.softmax(s, dim=-1)
    o = torch.matmul(p, v)  # (B, H, Lq, D)
    return o * keep_row[:, None, :, None].to(o.dtype)
