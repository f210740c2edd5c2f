"""Triton tiles of the fused contrastive loss (GPU; TRITON_INTERPRET=1 on CPU for tests).

Both kernels give one program a block of BLOCK_M local rows q (resident, feature dim padded to
BLOCK_D) and stream the gathered rows k in tiles of BLOCK_N; nothing of size (n, m) exists.
Loads are upcast to the constexpr COMPUTE dtype (fp32); dots accumulate in fp32 with
input_precision "ieee" for fp32 inputs and "tf32" for 16-bit inputs (exact for bf16/fp16
operands in q k^T). Softmax statistics are fp32 in natural-log units (the max is an exact
logit, so lse = m + log(l) loses nothing to a base-2 round trip).

Not tuned on GPUs: block sizes below are conservative picks by feature width.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from medtrain.kernels.runtime import triton_interpreted


@triton.jit
def _lse_rows_kernel(
    q_ptr,
    k_ptr,
    scale_ptr,
    lse_ptr,
    n,
    m,
    d,
    stride_q,
    stride_k,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    COMPUTE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
    dims = tl.arange(0, BLOCK_D)  # (BD,)
    row_ok = rows < n
    dim_ok = dims < d
    q = tl.load(
        q_ptr + rows.to(tl.int64)[:, None] * stride_q + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    ).to(COMPUTE)  # (BM, BD)
    scale = tl.load(scale_ptr).to(tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)  # running max
    l_i = tl.zeros((BLOCK_M,), tl.float32)  # running sum of exp(x - m_i)
    for start in range(0, m, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)  # (BN,)
        col_ok = cols < m
        k = tl.load(
            k_ptr + cols.to(tl.int64)[:, None] * stride_k + dims[None, :],
            mask=col_ok[:, None] & dim_ok[None, :],
            other=0.0,
        ).to(COMPUTE)  # (BN, BD)
        x = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BM, BN) fp32
        x = tl.where(col_ok[None, :], x, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(x, 1))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new[:, None]), 1)
        m_i = m_new
    tl.store(lse_ptr + rows, m_i + tl.log(l_i), mask=row_ok)


@triton.jit
def _grad_rows_kernel(
    q_ptr,
    k_ptr,
    scale_ptr,
    lse_q_ptr,
    lse_k_ptr,
    dq_ptr,
    ds_ptr,
    n,
    m,
    d,
    offset,
    stride_q,
    stride_k,
    stride_dq,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    COMPUTE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
    dims = tl.arange(0, BLOCK_D)  # (BD,)
    row_ok = rows < n
    dim_ok = dims < d
    q = tl.load(
        q_ptr + rows.to(tl.int64)[:, None] * stride_q + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    ).to(COMPUTE)  # (BM, BD)
    scale = tl.load(scale_ptr).to(tl.float32)
    lse_q = tl.load(lse_q_ptr + rows, mask=row_ok, other=0.0)  # (BM,)
    pos = rows + offset  # (BM,) global column of each row's positive
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)  # sum_j g_ij k_j
    ds = tl.zeros((BLOCK_M,), tl.float32)  # sum_j (p_ij - delta_ij) <q_i, k_j>
    for start in range(0, m, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)  # (BN,)
        col_ok = cols < m
        k = tl.load(
            k_ptr + cols.to(tl.int64)[:, None] * stride_k + dims[None, :],
            mask=col_ok[:, None] & dim_ok[None, :],
            other=0.0,
        ).to(COMPUTE)  # (BN, BD); masked columns are 0 and add nothing below
        lse_k = tl.load(lse_k_ptr + cols, mask=col_ok, other=float("inf"))  # (BN,)
        dot = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # (BM, BN) fp32
        x = dot * scale
        p_row = tl.exp(x - lse_q[:, None])  # softmax over the row (this side's CE)
        p_col = tl.exp(x - lse_k[None, :])  # softmax over the column (other side's CE)
        is_pos = cols[None, :] == pos[:, None]  # (BM, BN)
        g = p_row + p_col - tl.where(is_pos, 2.0, 0.0)
        ds += tl.sum(p_row * dot - tl.where(is_pos, dot, 0.0), 1)
        acc += tl.dot(g.to(COMPUTE), k, input_precision=PRECISION)  # (BM, BD)
    tl.store(
        dq_ptr + rows.to(tl.int64)[:, None] * stride_dq + dims[None, :],
        acc,
        mask=row_ok[:, None] & dim_ok[None, :],
    )
    tl.store(ds_ptr + rows, ds, mask=row_ok)


def _blocks(block_d: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps) by padded feature width; q and k tiles stay in registers."""
    if triton_interpreted():
        return 16, 16, 1
    if block_d <= 64:
        return 64, 64, 4
    if block_d <= 128:
        return 64, 64, 8
    if block_d <= 256:
        return 32, 64, 8
    return 16, 32, 8


class TritonTiles:
    """Row-LSE and gradient tiles in Triton; see the module docstring for precision.

    block_m / block_n override the per-width defaults (powers of two, >= 16); tests use them
    to exercise ragged edges with small shapes.
    """

    name = "triton"

    def __init__(self, block_m: int | None = None, block_n: int | None = None) -> None:
        self.block_m = block_m
        self.block_n = block_n

    def _config(self, q: Tensor, k: Tensor) -> dict:
        if q.dtype != k.dtype:
            raise ValueError(f"q and k dtypes differ: {q.dtype} vs {k.dtype}")
        block_d = max(16, triton.next_power_of_2(q.shape[1]))
        bm, bn, warps = _blocks(block_d)
        return {
            "BLOCK_M": self.block_m or bm,
            "BLOCK_N": self.block_n or bn,
            "BLOCK_D": block_d,
            "COMPUTE": tl.float32,
            "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
            "num_warps": warps,
        }

    def lse_rows(self, q: Tensor, k: Tensor, scale: Tensor, *, out: Tensor | None = None) -> Tensor:
        """q (n, d), k (m, d), scale () -> (n,) fp32 logsumexp_j s <q_i, k_j>."""
        q, k = q.contiguous(), k.contiguous()
        n, d = q.shape
        scale = scale.detach().float().reshape(1).contiguous()  # (1,)
        out = torch.empty(n, dtype=torch.float32, device=q.device) if out is None else out
        if n == 0:
            return out
        cfg = self._config(q, k)
        grid = (math.ceil(n / cfg["BLOCK_M"]),)
        _lse_rows_kernel[grid](q, k, scale, out, n, k.shape[0], d, q.stride(0), k.stride(0), **cfg)
        return out

    def grad_rows(
        self,
        q: Tensor,
        k: Tensor,
        scale: Tensor,
        lse_q: Tensor,
        lse_k: Tensor,
        offset: int,
        *,
        out: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """-> dq (n, d) fp32 = sum_j g_ij k_j, ds (n,) fp32; see function.py for g."""
        q, k = q.contiguous(), k.contiguous()
        n, d = q.shape
        scale = scale.detach().float().reshape(1).contiguous()  # (1,)
        lse_q = lse_q.float().contiguous()  # (n,)
        lse_k = lse_k.float().contiguous()  # (m,)
        if out is None:
            dq = torch.empty(n, d, dtype=torch.float32, device=q.device)
            ds = torch.empty(n, dtype=torch.float32, device=q.device)
        else:
            dq, ds = out
        if n == 0:
            return dq, ds
        cfg = self._config(q, k)
        grid = (math.ceil(n / cfg["BLOCK_M"]),)
        _grad_rows_kernel[grid](
            q, k, scale, lse_q, lse_k, dq, ds, n, k.shape[0], d, offset,
            q.stride(0), k.stride(0), dq.stride(0), **cfg,
        )  # fmt: skip
        return dq, ds
