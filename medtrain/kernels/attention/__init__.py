"""Fused cross-modal attention (Triton): forward and backward with right-padding lengths.

Layers: triton_fwd.py / triton_bwd.py (kernels + launchers) -> function.py
(torch.autograd.Function) -> op.py (torch.library op medtrain::cross_attention, compile- and
FlopCounterMode-visible, and `cross_attention`, the checked entry). reference.py is the fp32
math reference with the kernel's padding semantics; the attention registry's "eager" calls it,
so there is one copy of the masked-softmax math. Semantics match medtrain.models.attention (see
its docstring).

Importing this package imports neither triton nor the kernels: they load on first access to
`cross_attention`, `cross_attention_op`, `attention_flops` or `CrossAttentionFunction`. On CPU
the kernels run only in Triton's interpreter (medtrain.kernels.runtime), switched on before then.
"""

from __future__ import annotations

import importlib
from typing import Any

from medtrain.kernels.attention.reference import cross_attention_reference

# Names served from the Triton-importing submodules on first access.
_LAZY = {
    "CrossAttentionFunction": "function",
    "attention_flops": "op",
    "cross_attention": "op",
    "cross_attention_op": "op",
}

__all__ = [
    "CrossAttentionFunction",
    "attention_flops",
    "cross_attention",
    "cross_attention_op",
    "cross_attention_reference",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
