"""FlashAttention-2 style forward kernel with right-padding lengths, and its launcher.

One program computes one (BLOCK_M, D) query tile of one (batch, head): it streams the key/value
tiles once, keeping a running row max and row sum (online softmax in base 2, with
scale * log2(e) folded into the logits), and writes O and the row log-sum-exp (natural log, fp32).
Key tiles are unmasked except the ragged last one. Rows past q_len, and every row of a sample
with kv_len == 0, are written as zeros (LSE -inf).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from medtrain.kernels.attention import tuning

LOG2E = math.log2(math.e)


@triton.jit
def load_rows(ptrs, rows, limit, d_ok, MASK: tl.constexpr, EVEN_D: tl.constexpr):
    """Load a (rows, BLOCK_D) tile; rows >= limit (only if MASK) and lanes past D read as 0."""
    if MASK:
        if EVEN_D:
            return tl.load(ptrs, mask=(rows < limit)[:, None], other=0.0)
        return tl.load(ptrs, mask=(rows < limit)[:, None] & d_ok[None, :], other=0.0)
    if EVEN_D:
        return tl.load(ptrs)
    return tl.load(ptrs, mask=d_ok[None, :], other=0.0)


@triton.jit
def seq_lens(Q_LENS, KV_LENS, b, Lq, Lk, HAS_Q_LENS: tl.constexpr, HAS_KV_LENS: tl.constexpr):
    """Valid query / key counts of sample b, clamped to [0, Lq] / [0, Lk]."""
    q_len = b * 0 + Lq  # int32 tensors even when Triton specialises Lq / Lk == 1 to constants
    kv_len = b * 0 + Lk
    if HAS_Q_LENS:
        q_len = tl.minimum(tl.maximum(tl.load(Q_LENS + b), 0), Lq)
    if HAS_KV_LENS:
        kv_len = tl.minimum(tl.maximum(tl.load(KV_LENS + b), 0), Lk)
    return q_len, kv_len


@triton.jit
def _fwd_key_tile(
    acc,
    m_i,
    l_i,
    q,  # (BLOCK_M, BLOCK_D) in DOT_DTYPE
    k_base,
    v_base,
    start_n,
    kv_len,
    stride_kn,
    stride_kd,
    stride_vn,
    stride_vd,
    qk_scale,
    offs_n,
    offs_d,
    d_ok,
    MASK: tl.constexpr,
    EVEN_D: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One online-softmax step over the key tile starting at start_n."""
    cols = start_n + offs_n  # (BLOCK_N,)
    k = load_rows(
        k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
        cols,
        kv_len,
        d_ok,
        MASK,
        EVEN_D,
    )  # (BLOCK_N, BLOCK_D)
    s = tl.dot(q, tl.trans(k.to(DOT_DTYPE)), input_precision=PRECISION) * qk_scale  # (BM, BN)
    if MASK:
        s = tl.where((cols < kv_len)[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every tile has at least one valid key
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])  # (BLOCK_M, BLOCK_N)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = load_rows(
        v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
        cols,
        kv_len,
        d_ok,
        MASK,
        EVEN_D,
    )  # (BLOCK_N, BLOCK_D)
    acc = tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE), acc * alpha[:, None], input_precision=PRECISION)
    return acc, m_new, l_i


@triton.autotune(configs=tuning.FWD_CONFIGS, key=tuning.TUNE_KEY)
@triton.jit
def _attn_fwd_kernel(
    Q,
    K,
    V,
    OUT,
    LSE,
    Q_LENS,
    KV_LENS,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    H,
    Lq,
    Lk,
    qk_scale,  # scale * log2(e)
    LQ_BUCKET,  # autotune key only
    LK_BUCKET,  # autotune key only
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_Q_LENS: tl.constexpr,
    HAS_KV_LENS: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)  # query tile: fastest grid axis
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    q_len, kv_len = seq_lens(Q_LENS, KV_LENS, b, Lq, Lk, HAS_Q_LENS, HAS_KV_LENS)
    EVEN_D: tl.constexpr = HEAD_DIM == BLOCK_D

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh

    q = load_rows(
        q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        offs_m,
        q_len,
        d_ok,
        True,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_M, BLOCK_D)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # Tiles wholly past q_len skip the loop and write zeros.
    hi = tl.where(pid_m * BLOCK_M < q_len, kv_len, 0)
    hi_full = (hi // BLOCK_N) * BLOCK_N
    for start_n in range(0, hi_full, BLOCK_N):
        acc, m_i, l_i = _fwd_key_tile(
            acc, m_i, l_i, q, k_base, v_base, start_n, kv_len,
            stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, offs_n, offs_d, d_ok,
            False, EVEN_D, DOT_DTYPE, PRECISION,
        )  # fmt: skip
    if hi_full < hi:  # ragged last key tile
        acc, m_i, l_i = _fwd_key_tile(
            acc, m_i, l_i, q, k_base, v_base, hi_full, kv_len,
            stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, offs_n, offs_d, d_ok,
            True, EVEN_D, DOT_DTYPE, PRECISION,
        )  # fmt: skip

    valid = (offs_m < q_len) & (l_i > 0)  # (BLOCK_M,)
    l_safe = tl.where(valid, l_i, 1.0)
    o = tl.where(valid[:, None], acc / l_safe[:, None], 0.0)
    lse = tl.where(valid, (m_i + tl.log2(l_safe)) * 0.6931471805599453, float("-inf"))

    o_base = OUT + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    o_ptrs = o_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, o.to(OUT.dtype.element_ty), mask=(offs_m < Lq)[:, None] & d_ok[None, :])
    tl.store(LSE + pid_bh.to(tl.int64) * Lq + offs_m, lse, mask=offs_m < Lq)


def alloc(like: Tensor, shape: tuple[int, ...] | None = None, dtype=None) -> Tensor:
    """Uninitialised kernel output: empty_like(like) (keeps its layout), or a contiguous `shape`.

    The single allocation point of the launchers; tests patch it to NaN-fill buffers, proving
    that the kernels write every element.
    """
    if shape is None:
        return torch.empty_like(like)
    return torch.empty(shape, device=like.device, dtype=like.dtype if dtype is None else dtype)


def lengths_arg(lens: Tensor | None, device: torch.device) -> Tensor | None:
    """(B,) lengths of any integer dtype/device -> contiguous int32 on `device`."""
    if lens is None:
        return None
    return lens.to(device=device, dtype=torch.int32).contiguous()


def attention_forward(
    q: Tensor,  # (B, H, Lq, D)
    k: Tensor,  # (B, H, Lk, D)
    v: Tensor,  # (B, H, Lk, D)
    q_lens: Tensor | None,  # (B,) int
    kv_lens: Tensor | None,  # (B,) int
    scale: float,
) -> tuple[Tensor, Tensor]:
    """Launch the forward kernel. Returns O (B, H, Lq, D) in q's dtype and layout, LSE (B, H, Lq)
    fp32 (natural log; -inf for rows that are written as zeros). Any strides are accepted."""
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    o = alloc(q)  # q's layout: e.g. a (B, Lq, H, D) buffer viewed as (B, H, Lq, D)
    lse = alloc(q, (B, H, Lq), torch.float32)
    if o.numel() == 0:
        return o, lse.fill_(float("-inf"))
    ql, kl = lengths_arg(q_lens, q.device), lengths_arg(kv_lens, q.device)

    def grid(meta):
        return (triton.cdiv(Lq, meta["BLOCK_M"]), B * H)

    _attn_fwd_kernel[grid](
        q, k, v, o, lse, q if ql is None else ql, q if kl is None else kl,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, Lq, Lk, scale * LOG2E, tuning.length_bucket(Lq), tuning.length_bucket(Lk),
        HEAD_DIM=D,
        BLOCK_D=tuning.block_d(D),
        HAS_Q_LENS=ql is not None,
        HAS_KV_LENS=kl is not None,
        DOT_DTYPE=tuning.dot_dtype(q.dtype),
        PRECISION=tuning.dot_precision(q.dtype),
    )  # fmt: skip
    return o, lse
