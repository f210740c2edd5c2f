"""torch.autograd.Function over the Triton kernels (the dispatcher-free layer).

The custom op in op.py reuses `setup_context` from here, so what is saved for backward is
defined once. This class is usable on its own (`CrossAttentionFunction.apply`) when the
torch.library dispatch overhead matters more than torch.compile / FlopCounterMode visibility.
"""

from __future__ import annotations

import torch
from torch import Tensor

from medtrain.kernels.attention.triton_bwd import attention_backward
from medtrain.kernels.attention.triton_fwd import attention_forward


class CrossAttentionFunction(torch.autograd.Function):
    """Fused attention with right-padding lengths: (q, k, v, q_lens, kv_lens, scale) -> (o, lse).

    Dtype semantics:
    - q, k, v must share one dtype: fp32, fp16 or bf16. O, dQ, dK, dV come back in that dtype
      (and in the layout of q / k / v respectively: strided views are read in place, no copies).
    - Inside the kernels the logits, softmax statistics and all accumulators are fp32. fp16/bf16
      operands feed tl.dot directly (tensor cores), with P and dS rounded to the input dtype
      before their matmuls, as FlashAttention does. fp32 operands use IEEE fp32 dots unless
      torch.set_float32_matmul_precision allows TF32. Under the Triton interpreter every operand
      is upcast to fp32 (bf16 would otherwise be computed on raw bit patterns).
    - LSE is (B, H, Lq) fp32, natural log, -inf for rows written as zeros. It is an output so
      backward can recompute P; it has no gradient.
    - q_lens / kv_lens are integer (B,) tensors of any integer dtype and device; they receive no
      gradient. Nothing is modified in place.
    """

    @staticmethod
    def forward(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        q_lens: Tensor | None,
        kv_lens: Tensor | None,
        scale: float,
    ) -> tuple[Tensor, Tensor]:
        return attention_forward(q, k, v, q_lens, kv_lens, scale)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        q, k, v, q_lens, kv_lens, scale = inputs
        o, lse = output
        ctx.save_for_backward(q, k, v, o, lse, q_lens, kv_lens)
        ctx.scale = scale
        ctx.mark_non_differentiable(lse)

    @staticmethod
    def backward(ctx, do: Tensor, _dlse: Tensor | None):
        q, k, v, o, lse, q_lens, kv_lens = ctx.saved_tensors
        dq, dk, dv = attention_backward(do, q, k, v, o, lse, q_lens, kv_lens, ctx.scale)
        return dq, dk, dv, None, None, None
