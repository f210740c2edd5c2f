"""FlashAttention-2 style backward kernels and their launcher.

Three launches, no atomics (deterministic):
1. preprocess: delta = rowsum(O * dO) per query row (fp32).
2. dK/dV: one program per (BLOCK_N key tile, batch*head); K and V stay resident while the
   program loops over query tiles up to q_len, recomputing P^T = exp2(K Q^T * c - lse2) from the
   saved LSE.
3. dQ: one program per (BLOCK_M query tile, batch*head), looping over key tiles up to kv_len.

Padded query rows contribute nothing (their Q, dO, LSE, delta are read as zeros) and get dQ = 0;
keys past kv_len get dK = dV = 0, as does every key of a sample with kv_len == 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from medtrain.kernels.attention import triton_fwd, tuning
from medtrain.kernels.attention.triton_fwd import LOG2E, lengths_arg, load_rows, seq_lens


@triton.jit
def _bwd_preprocess_kernel(
    OUT,
    DO,
    DELTA,
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    stride_dob,
    stride_doh,
    stride_dom,
    stride_dod,
    H,
    Lq,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m < Lq)[:, None] & (offs_d < HEAD_DIM)[None, :]
    o_ptrs = (
        OUT
        + b.to(tl.int64) * stride_ob
        + h.to(tl.int64) * stride_oh
        + offs_m[:, None] * stride_om
        + offs_d[None, :] * stride_od
    )
    do_ptrs = (
        DO
        + b.to(tl.int64) * stride_dob
        + h.to(tl.int64) * stride_doh
        + offs_m[:, None] * stride_dom
        + offs_d[None, :] * stride_dod
    )
    o = tl.load(o_ptrs, mask=mask, other=0.0).to(tl.float32)  # (BLOCK_M, BLOCK_D)
    do = tl.load(do_ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + pid_bh.to(tl.int64) * Lq + offs_m, tl.sum(o * do, 1), mask=offs_m < Lq)


@triton.jit
def _dkdv_query_tile(
    dk,
    dv,
    k,  # (BLOCK_N, BLOCK_D) in DOT_DTYPE
    v,  # (BLOCK_N, BLOCK_D) in DOT_DTYPE
    q_base,
    do_base,
    lse_base,
    delta_base,
    start_m,
    q_len,
    stride_qm,
    stride_qd,
    stride_dom,
    stride_dod,
    qk_scale,
    offs_m,
    offs_d,
    d_ok,
    MASK: tl.constexpr,
    EVEN_D: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Accumulate one query tile's contribution to the resident key tile's dK, dV."""
    rows = start_m + offs_m  # (BLOCK_M,)
    q = load_rows(
        q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
        rows,
        q_len,
        d_ok,
        MASK,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_M, BLOCK_D)
    do = load_rows(
        do_base + rows[:, None] * stride_dom + offs_d[None, :] * stride_dod,
        rows,
        q_len,
        d_ok,
        MASK,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_M, BLOCK_D)
    if MASK:  # padded rows: q = dO = 0, lse = delta = 0 -> finite P^T, zero contribution
        lse2 = tl.load(lse_base + rows, mask=rows < q_len, other=0.0) * 1.4426950408889634
        delta = tl.load(delta_base + rows, mask=rows < q_len, other=0.0)
    else:
        lse2 = tl.load(lse_base + rows) * 1.4426950408889634
        delta = tl.load(delta_base + rows)
    qk_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
    p_t = tl.exp2(qk_t - lse2[None, :])
    dv = tl.dot(p_t.to(DOT_DTYPE), do, dv, input_precision=PRECISION)  # (BLOCK_N, BLOCK_D)
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # (BLOCK_N, BLOCK_M)
    ds_t = p_t * (dp_t - delta[None, :])
    dk = tl.dot(ds_t.to(DOT_DTYPE), q, dk, input_precision=PRECISION)  # (BLOCK_N, BLOCK_D)
    return dk, dv


@triton.autotune(configs=tuning.DKDV_CONFIGS, key=tuning.TUNE_KEY)
@triton.jit
def _attn_bwd_dkdv_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
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
    stride_dob,
    stride_doh,
    stride_dom,
    stride_dod,
    stride_dkb,
    stride_dkh,
    stride_dkn,
    stride_dkd,
    stride_dvb,
    stride_dvh,
    stride_dvn,
    stride_dvd,
    H,
    Lq,
    Lk,
    scale,
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
    pid_n = tl.program_id(0)  # key tile: fastest grid axis
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    q_len, kv_len = seq_lens(Q_LENS, KV_LENS, b, Lq, Lk, HAS_Q_LENS, HAS_KV_LENS)
    EVEN_D: tl.constexpr = HEAD_DIM == BLOCK_D

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    do_base = DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
    lse_base = LSE + pid_bh.to(tl.int64) * Lq
    delta_base = DELTA + pid_bh.to(tl.int64) * Lq

    k = load_rows(
        k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
        offs_n,
        kv_len,
        d_ok,
        True,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_N, BLOCK_D)
    v = load_rows(
        v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
        offs_n,
        kv_len,
        d_ok,
        True,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_N, BLOCK_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)

    # Key tiles wholly past kv_len skip the loop and write zeros.
    hi = tl.where(pid_n * BLOCK_N < kv_len, q_len, 0)
    hi_full = (hi // BLOCK_M) * BLOCK_M
    for start_m in range(0, hi_full, BLOCK_M):
        dk, dv = _dkdv_query_tile(
            dk, dv, k, v, q_base, do_base, lse_base, delta_base, start_m, q_len,
            stride_qm, stride_qd, stride_dom, stride_dod, qk_scale, offs_m, offs_d, d_ok,
            False, EVEN_D, DOT_DTYPE, PRECISION,
        )  # fmt: skip
    if hi_full < hi:  # ragged last query tile
        dk, dv = _dkdv_query_tile(
            dk, dv, k, v, q_base, do_base, lse_base, delta_base, hi_full, q_len,
            stride_qm, stride_qd, stride_dom, stride_dod, qk_scale, offs_m, offs_d, d_ok,
            True, EVEN_D, DOT_DTYPE, PRECISION,
        )  # fmt: skip

    # Keys past kv_len read as zeros above but still collected probability mass: drop it here.
    key_ok = (offs_n < kv_len)[:, None]
    dk = tl.where(key_ok, dk * scale, 0.0)
    dv = tl.where(key_ok, dv, 0.0)
    out_mask = (offs_n < Lk)[:, None] & d_ok[None, :]
    dk_ptrs = (
        DK
        + b.to(tl.int64) * stride_dkb
        + h.to(tl.int64) * stride_dkh
        + offs_n[:, None] * stride_dkn
        + offs_d[None, :] * stride_dkd
    )
    dv_ptrs = (
        DV
        + b.to(tl.int64) * stride_dvb
        + h.to(tl.int64) * stride_dvh
        + offs_n[:, None] * stride_dvn
        + offs_d[None, :] * stride_dvd
    )
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=out_mask)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=out_mask)


@triton.jit
def _dq_key_tile(
    dq,
    q,  # (BLOCK_M, BLOCK_D) in DOT_DTYPE
    do,  # (BLOCK_M, BLOCK_D) in DOT_DTYPE
    lse2,  # (BLOCK_M,) base-2 LSE
    delta,  # (BLOCK_M,)
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
    """Accumulate one key tile's contribution to the resident query tile's dQ."""
    cols = start_n + offs_n  # (BLOCK_N,)
    k = load_rows(
        k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
        cols,
        kv_len,
        d_ok,
        MASK,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_N, BLOCK_D)
    v = load_rows(
        v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
        cols,
        kv_len,
        d_ok,
        MASK,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_N, BLOCK_D)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
    p = tl.exp2(s - lse2[:, None])
    if MASK:
        p = tl.where((cols < kv_len)[None, :], p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)  # (BLOCK_M, BLOCK_N)
    ds = p * (dp - delta[:, None])
    return tl.dot(ds.to(DOT_DTYPE), k, dq, input_precision=PRECISION)  # (BLOCK_M, BLOCK_D)


@triton.autotune(configs=tuning.DQ_CONFIGS, key=tuning.TUNE_KEY)
@triton.jit
def _attn_bwd_dq_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
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
    stride_dob,
    stride_doh,
    stride_dom,
    stride_dod,
    stride_dqb,
    stride_dqh,
    stride_dqm,
    stride_dqd,
    H,
    Lq,
    Lk,
    scale,
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
    row_ok = offs_m < q_len
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    do_base = DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
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
    do = load_rows(
        do_base + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
        offs_m,
        q_len,
        d_ok,
        True,
        EVEN_D,
    ).to(DOT_DTYPE)  # (BLOCK_M, BLOCK_D)
    lse2 = (
        tl.load(LSE + pid_bh.to(tl.int64) * Lq + offs_m, mask=row_ok, other=0.0)
        * 1.4426950408889634
    )
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * Lq + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # Query tiles wholly past q_len skip the loop and write zeros.
    hi = tl.where(pid_m * BLOCK_M < q_len, kv_len, 0)
    hi_full = (hi // BLOCK_N) * BLOCK_N
    for start_n in range(0, hi_full, BLOCK_N):
        dq = _dq_key_tile(
            dq, q, do, lse2, delta, k_base, v_base, start_n, kv_len,
            stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, offs_n, offs_d, d_ok,
            False, EVEN_D, DOT_DTYPE, PRECISION,
        )  # fmt: skip
    if hi_full < hi:  # ragged last key tile
        dq = _dq_key_tile(
            dq, q, do, lse2, delta, k_base, v_base, hi_full, kv_len,
            stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, offs_n, offs_d, d_ok,
            True, EVEN_D, DOT_DTYPE, PRECISION,
        )  # fmt: skip

    dq = tl.where(row_ok[:, None], dq * scale, 0.0)
    dq_ptrs = (
        DQ
        + b.to(tl.int64) * stride_dqb
        + h.to(tl.int64) * stride_dqh
        + offs_m[:, None] * stride_dqm
        + offs_d[None, :] * stride_dqd
    )
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=(offs_m < Lq)[:, None] & d_ok[None, :])


def attention_backward(
    do: Tensor,  # (B, H, Lq, D)
    q: Tensor,  # (B, H, Lq, D)
    k: Tensor,  # (B, H, Lk, D)
    v: Tensor,  # (B, H, Lk, D)
    o: Tensor,  # (B, H, Lq, D)
    lse: Tensor,  # (B, H, Lq) fp32, natural log
    q_lens: Tensor | None,  # (B,) int
    kv_lens: Tensor | None,  # (B,) int
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the three backward kernels. Returns dQ, dK, dV in the inputs' dtypes and layouts."""
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    alloc = triton_fwd.alloc  # looked up per call so a test patch applies here too
    dq, dk, dv = alloc(q), alloc(k), alloc(v)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    if do.dtype != q.dtype:
        do = do.to(q.dtype)
    lse = lse.contiguous()
    ql, kl = lengths_arg(q_lens, q.device), lengths_arg(kv_lens, q.device)
    delta = alloc(q, (B, H, Lq), torch.float32)
    BLOCK_D = tuning.block_d(D)
    bm = tuning.PREPROCESS_BLOCK_M
    _bwd_preprocess_kernel[(triton.cdiv(Lq, bm), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, Lq, HEAD_DIM=D, BLOCK_D=BLOCK_D, BLOCK_M=bm
    )

    common = dict(
        HEAD_DIM=D,
        BLOCK_D=BLOCK_D,
        HAS_Q_LENS=ql is not None,
        HAS_KV_LENS=kl is not None,
        DOT_DTYPE=tuning.dot_dtype(q.dtype),
        PRECISION=tuning.dot_precision(q.dtype),
    )
    lens = (q if ql is None else ql, q if kl is None else kl)
    shape = (H, Lq, Lk, scale, scale * LOG2E, tuning.length_bucket(Lq), tuning.length_bucket(Lk))

    def dkdv_grid(meta):
        return (triton.cdiv(Lk, meta["BLOCK_N"]), B * H)

    _attn_bwd_dkdv_kernel[dkdv_grid](
        q, k, v, do, lse, delta, dk, dv, *lens,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
        *shape, **common,
    )  # fmt: skip

    def dq_grid(meta):
        return (triton.cdiv(Lq, meta["BLOCK_M"]), B * H)

    _attn_bwd_dq_kernel[dq_grid](
        q, k, v, do, lse, delta, dq, *lens,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
        *shape, **common,
    )  # fmt: skip
    return dq, dk, dv
