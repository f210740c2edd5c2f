"""Contrastive-loss registry: the one place that chooses an implementation, like attention's.

Every implementation has the reference's signature:

    loss_fn(image_emb (b, E), text_emb (b, E), logit_scale (), *, group=None) -> fp32 scalar

    reference  materialized fp32 loss (reference.py); runs everywhere, memory O(b * B)
    cpp        fused LSE exchange over the native extension's tiles (CPU, CUDA)
    triton     fused LSE exchange over Triton tiles (CUDA; CPU only in Triton's interpreter)
    auto       per call, the first of AUTO_ORDER[device type] that runs here

Fused backends are imported (and the extension built) on first use, never at import; whether
one can run on a device is checked once per process. MEDTRAIN_CONTRASTIVE_IMPL forces what
"auto" resolves to (explicit names are honoured as given); when no fused backend runs, "auto"
falls back to the reference with one warning per process.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable

import torch.distributed as dist
from torch import Tensor

from medtrain.kernels import runtime
from medtrain.kernels.contrastive.function import TileBackend, fused_contrastive_loss
from medtrain.kernels.contrastive.reference import contrastive_loss_reference

ContrastiveFn = Callable[..., Tensor]

IMPL_ENV = "MEDTRAIN_CONTRASTIVE_IMPL"
BACKENDS = ("triton", "cpp")  # fused tile backends (get_backend)
# "auto": the first name here that runs on the device type; the reference closes every list.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("triton", "cpp", "reference"),
    "cpu": ("cpp", "reference"),
}

CONTRASTIVE_IMPLS: dict[str, ContrastiveFn] = {}
_UNAVAILABLE: dict[tuple[str, str], str | None] = {}  # (impl, device type) -> reason or None
_warned_fallback = False


def register_contrastive(name: str) -> Callable[[ContrastiveFn], ContrastiveFn]:
    def deco(fn: ContrastiveFn) -> ContrastiveFn:
        CONTRASTIVE_IMPLS[name] = fn
        return fn

    return deco


def _valid() -> str:
    return ", ".join(sorted(CONTRASTIVE_IMPLS))


def get_contrastive(name: str) -> ContrastiveFn:
    """The loss function registered under `name` ("auto" resolves per call, by device)."""
    if name not in CONTRASTIVE_IMPLS:
        raise ValueError(f"unknown contrastive implementation {name!r}; valid: {_valid()}")
    return CONTRASTIVE_IMPLS[name]


# ------------------------------------------------------------------ tile backends


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
    """None if implementation `name` can run on `device_type` here, else why not (loads it)."""
    if name == "reference":
        return None
    if name == "cpp":
        from medtrain.kernels import native

        ext = native.load(warn=False)
        if ext is None:
            return f"native extension unavailable: {native.load_error()}"
        if device_type == "cuda" and not ext.with_cuda:
            return "native extension built without CUDA"
        return None if device_type in ("cpu", "cuda") else f"no kernels for {device_type}"
    if name == "triton":
        reason = runtime.triton_unavailable(device_type)
        if reason is not None:
            return reason
        try:
            importlib.import_module("medtrain.kernels.contrastive.triton_kernels")
        except Exception as exc:  # broken triton install, unsupported driver, ...
            return f"triton kernels failed to import: {type(exc).__name__}: {exc}"
        return None
    return f"unknown implementation {name!r}"


def _unavailable_cached(name: str, device_type: str) -> str | None:
    key = (name, device_type)
    if key not in _UNAVAILABLE:
        _UNAVAILABLE[key] = unavailable_reason(name, device_type)
    return _UNAVAILABLE[key]


# ------------------------------------------------------------------ resolution


def resolve_contrastive_impl(impl: str, device_type: str = "cpu") -> str:
    """The concrete implementation `impl` names ("auto" -> the best that runs on the device).

    "auto" honours MEDTRAIN_CONTRASTIVE_IMPL; when no fused backend runs it falls back to the
    reference with one warning per process. Unknown names raise ValueError listing the valid.
    """
    global _warned_fallback
    if impl != "auto":
        get_contrastive(impl)  # unknown -> ValueError with the valid names
        return impl
    forced = os.environ.get(IMPL_ENV, "").strip()
    if forced and forced != "auto":
        return resolve_contrastive_impl(forced, device_type)
    reasons = []
    for name in AUTO_ORDER.get(device_type, ("reference",)):
        reason = _unavailable_cached(name, device_type)
        if reason is None:
            if name == "reference" and reasons and not _warned_fallback:
                _warned_fallback = True
                warnings.warn(
                    f"no fused contrastive loss available on {device_type} "
                    f"({'; '.join(reasons)}); using the materialized reference (memory "
                    f"O(b * B)). Set {IMPL_ENV}=reference to silence.",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return name
        reasons.append(f"{name}: {reason}")
    raise AssertionError("unreachable: every AUTO_ORDER list ends with the reference")


# ------------------------------------------------------------------ the registry

register_contrastive("reference")(contrastive_loss_reference)


def _fused(backend: str) -> ContrastiveFn:
    """Loss over a fused tile backend; imports (and builds) the backend on first call only."""

    def fn(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor, *, group=None) -> Tensor:
        be = get_backend(backend)
        return fused_contrastive_loss(image_emb, text_emb, logit_scale, group=group, backend=be)

    fn.__name__ = fn.__qualname__ = f"contrastive_loss_{backend}"
    return fn


for _name in BACKENDS:
    register_contrastive(_name)(_fused(_name))


@register_contrastive("auto")
def auto_contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
) -> Tensor:
    """The implementation resolve_contrastive_impl("auto", device) picks for these tensors."""
    fn = CONTRASTIVE_IMPLS[resolve_contrastive_impl("auto", image_emb.device.type)]
    return fn(image_emb, text_emb, logit_scale, group=group)
