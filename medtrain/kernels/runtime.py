"""Where the Triton kernels can run: the one place that reads TRITON_INTERPRET.

Every caller that asks "interpreter or not" (the attention registry, the attention launch
configs, the contrastive dispatch and its Triton tiles) asks here. Light: imports neither triton
nor, until a CUDA question is asked, torch.

Triton reads TRITON_INTERPRET when a kernel is decorated (@triton.jit), so the variable must be
set before the kernel modules are first imported; tests/conftest.py sets it on GPU-less machines.
"""

from __future__ import annotations

import functools
import importlib.util
import os

INTERPRET_ENV = "TRITON_INTERPRET"
_TRUE = frozenset({"1", "true", "on", "yes"})  # the values Triton's own getenv_bool accepts


def triton_interpreted() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1, true, on, yes)."""
    return os.environ.get(INTERPRET_ENV, "").strip().lower() in _TRUE


@functools.cache
def triton_installed() -> bool:
    """True when the triton package is importable (checked once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_unavailable(device_type: str) -> str | None:
    """None when Triton kernels can run on tensors of `device_type` here, else why not."""
    if not triton_installed():
        return "triton is not installed"
    if device_type == "cpu":
        if triton_interpreted():
            return None
        return f"triton runs on CPU only in its interpreter ({INTERPRET_ENV}=1)"
    if device_type == "cuda":
        import torch

        return None if torch.cuda.is_available() else "no CUDA device"
    return f"no Triton kernels for device type {device_type!r}"
