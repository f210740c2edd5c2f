"""Tile backend over the native extension (csrc/contrastive): ATen/OpenMP on CPU, cuBLAS tiles
with fused CUDA epilogues on GPUs. Loading (or JIT-building) happens on first use."""

from __future__ import annotations

import torch
from torch import Tensor

from medtrain.kernels import native


def ops():
    """torch.ops.medtrain with the extension loaded; RuntimeError with the reason otherwise."""
    if native.load(warn=False) is None:
        raise RuntimeError(f"medtrain native extension unavailable: {native.load_error()}")
    return torch.ops.medtrain


class CppTiles:
    """Row-LSE and gradient tiles from the extension; inputs of any float dtype, fp32 math.

    block_n: columns per tile (0: sized so the (n, block_n) fp32 buffer stays near 64 MB on
    CPU, 128 MB on CUDA).
    """

    name = "cpp"

    def __init__(self, block_n: int = 0) -> None:
        self.block_n = block_n

    def lse_rows(self, q: Tensor, k: Tensor, scale: Tensor) -> Tensor:
        """q (n, d), k (m, d), scale () -> (n,) fp32 logsumexp_j s <q_i, k_j>."""
        return ops().contrastive_lse_rows(q, k, scale, self.block_n)

    def grad_rows(
        self, q: Tensor, k: Tensor, scale: Tensor, lse_q: Tensor, lse_k: Tensor, offset: int
    ) -> tuple[Tensor, Tensor]:
        """-> dq (n, d) fp32 = sum_j g_ij k_j, ds (n,) fp32; see function.py for g."""
        dq, ds = ops().contrastive_grad_rows(q, k, scale, lse_q, lse_k, offset, self.block_n)
        return dq, ds
