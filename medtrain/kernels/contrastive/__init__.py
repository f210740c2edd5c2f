"""Global-batch contrastive loss kernels.

reference.py       materialized fp32 loss (open_clip gather-with-grad semantics); the oracle
function.py        autograd.Function doing the all-gather / LSE exchange over tile primitives
cpp.py             tile backend over the csrc/ extension (CPU ATen/OpenMP, CUDA)
triton_kernels.py  tile backend in Triton (GPU; interpreter on CPU)

Importing this package compiles nothing and does not import Triton; backends load on first use.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from medtrain.kernels.contrastive.function import TileBackend, fused_contrastive_loss

BACKENDS = ("triton", "cpp")


def get_backend(name: str, **options) -> TileBackend:
    """A tile backend by name ("cpp", "triton"); options go to its constructor (block sizes)."""
    if name == "cpp":
        from medtrain.kernels.contrastive.cpp import CppTiles, ops

        ops()  # load now so a missing extension fails here with its reason
        return CppTiles(**options)
    if name == "triton":
        from medtrain.kernels.contrastive.triton_kernels import TritonTiles

        return TritonTiles(**options)
    raise ValueError(f"unknown contrastive backend {name!r}; valid: {', '.join(BACKENDS)}")


def unavailable_reason(name: str, device_type: str) -> str | None:
    """None if backend `name` can run on `device_type` here, else why not (loads it to check)."""
    if name == "cpp":
        from medtrain.kernels import native

        ext = native.load(warn=False)
        if ext is None:
            return f"native extension unavailable: {native.load_error()}"
        if device_type == "cuda" and not ext.with_cuda:
            return "native extension built without CUDA"
        return None if device_type in ("cpu", "cuda") else f"no kernels for {device_type}"
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return "triton runs on CPU only under TRITON_INTERPRET=1"
        if device_type == "cuda" and not torch.cuda.is_available():
            return "no CUDA device"
        if device_type not in ("cpu", "cuda"):
            return f"no kernels for {device_type}"
        try:
            importlib.import_module("medtrain.kernels.contrastive.triton_kernels")
        except Exception as exc:  # broken triton install, unsupported driver, ...
            return f"triton kernels failed to import: {type(exc).__name__}: {exc}"
        return None
    return f"unknown backend {name!r}"


__all__ = ["BACKENDS", "TileBackend", "fused_contrastive_loss", "get_backend", "unavailable_reason"]
