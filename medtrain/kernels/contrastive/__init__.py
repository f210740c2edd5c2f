"""Global-batch contrastive loss kernels.

dispatch.py        the registry (reference | cpp | triton | auto), backend loading, "auto" order
reference.py       materialized fp32 loss (open_clip gather-with-grad semantics); the oracle
function.py        autograd.Function doing the all-gather / LSE exchange over tile primitives
cpp.py             tile backend over the csrc/ extension (CPU ATen/OpenMP, CUDA)
triton_kernels.py  tile backend in Triton (GPU; interpreter on CPU)

Importing this package compiles nothing and does not import Triton; backends load on first use.
"""

from __future__ import annotations

from medtrain.kernels.contrastive.dispatch import (
    BACKENDS,
    CONTRASTIVE_IMPLS,
    get_backend,
    get_contrastive,
    register_contrastive,
    resolve_contrastive_impl,
    unavailable_reason,
)
from medtrain.kernels.contrastive.function import TileBackend, fused_contrastive_loss

__all__ = [
    "BACKENDS",
    "CONTRASTIVE_IMPLS",
    "TileBackend",
    "fused_contrastive_loss",
    "get_backend",
    "get_contrastive",
    "register_contrastive",
    "resolve_contrastive_impl",
    "unavailable_reason",
]
