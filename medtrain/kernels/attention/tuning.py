"""Launch parameters for the attention kernels: block sizes, autotune spaces, dot dtypes.

On a GPU each kernel autotunes over a small space keyed on the head dim, power-of-two buckets of
the sequence lengths and (automatically, by Triton) the tensor dtypes. Under the CPU interpreter
(medtrain.kernels.runtime.triton_interpreted(), read once at import as triton.jit does) every
kernel gets one fixed config, small enough that ragged last tiles and multi-tile loops are
exercised by small test shapes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from medtrain.kernels.runtime import triton_interpreted

INTERPRET = triton_interpreted()  # fixed at import, as triton.jit fixes it at decoration

# Autotune keys (kernel argument names); Triton appends every tensor argument's dtype itself.
TUNE_KEY = ["BLOCK_D", "LQ_BUCKET", "LK_BUCKET"]

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def _configs(space: list[tuple[int, int, int, int]], interp: tuple[int, int]) -> list:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) tuples -> triton.Configs (one when interpreted)."""
    if INTERPRET:
        return [triton.Config({"BLOCK_M": interp[0], "BLOCK_N": interp[1]}, num_warps=4)]
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        for m, n, w, s in space
    ]


# Forward: one query tile per program, loop over key tiles.
FWD_CONFIGS = _configs(
    [
        (128, 64, 4, 3),
        (128, 64, 8, 3),
        (128, 128, 8, 2),
        (64, 64, 4, 3),
        (128, 32, 4, 4),
        (64, 128, 4, 2),
    ],
    interp=(32, 32),
)
# dK/dV: one key tile per program (BLOCK_N), loop over query tiles (BLOCK_M).
DKDV_CONFIGS = _configs(
    [(32, 128, 4, 3), (64, 128, 8, 2), (64, 64, 4, 3), (32, 64, 4, 3), (64, 128, 4, 3)],
    interp=(16, 32),
)
# dQ: one query tile per program (BLOCK_M), loop over key tiles (BLOCK_N).
DQ_CONFIGS = _configs(
    [(128, 32, 4, 3), (128, 64, 8, 2), (64, 64, 4, 3), (64, 32, 4, 3), (128, 64, 4, 3)],
    interp=(32, 32),
)
PREPROCESS_BLOCK_M = 64 if not INTERPRET else 32


def block_d(head_dim: int) -> int:
    """Head-dim tile: next power of two, at least 16 (tl.dot's minimum); extra lanes are masked."""
    return max(16, triton.next_power_of_2(head_dim))


def length_bucket(n: int) -> int:
    """Power-of-two bucket used as an autotune key so ragged batch maxima don't retune."""
    return min(triton.next_power_of_2(max(n, 1)), 4096)


def dot_dtype(dtype: torch.dtype) -> tl.dtype:
    """Operand dtype fed to tl.dot (accumulation is always fp32).

    fp16/bf16 feed the tensor cores directly on a GPU. The interpreter stores bf16 as raw 16-bit
    integers and would multiply bit patterns, so there every operand is upcast to fp32.
    """
    if dtype not in _TL_DTYPES:
        raise TypeError(f"cross_attention supports fp32, fp16, bf16; got {dtype}")
    if dtype == torch.float32 or (INTERPRET and dtype == torch.bfloat16):
        return tl.float32
    return _TL_DTYPES[dtype]


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: IEEE for fp32 operands unless torch's matmul precision allows TF32
    (torch.set_float32_matmul_precision); 16-bit operands take the default (the setting only
    affects fp32 operands)."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"
