"""Training losses: global-batch contrastive (dispatched by implementation), MLM, composite."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from medtrain.kernels.contrastive.reference import contrastive_loss_reference
from medtrain.losses.config import LossConfig

ContrastiveFn = Callable[..., Tensor]

# Forces what "auto" resolves to, e.g. MEDTRAIN_CONTRASTIVE_IMPL=reference (explicit impl
# arguments are honoured as given).
IMPL_ENV = "MEDTRAIN_CONTRASTIVE_IMPL"


def _fused(backend: str) -> ContrastiveFn:
    """Loss over a fused tile backend; imports (and builds) the backend on first call only."""

    def fn(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor, *, group=None) -> Tensor:
        from medtrain.kernels.contrastive import fused_contrastive_loss, get_backend

        be = get_backend(backend)
        return fused_contrastive_loss(image_emb, text_emb, logit_scale, group=group, backend=be)

    fn.__name__ = fn.__qualname__ = f"contrastive_loss_{backend}"
    return fn


# name -> fn(image_emb, text_emb, logit_scale, *, group) -> scalar loss. "auto" takes the first
# name in AUTO_ORDER whose backend loads on the device (checked once per process, lazily).
CONTRASTIVE_IMPLS: dict[str, ContrastiveFn] = {
    "reference": contrastive_loss_reference,
    "triton": _fused("triton"),
    "cpp": _fused("cpp"),
}
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("triton", "cpp", "reference"),
    "cpu": ("cpp", "reference"),
}
_UNAVAILABLE: dict[tuple[str, str], str | None] = {}  # (impl, device type) -> reason or None
_warned_fallback = False


def _unavailable(name: str, device_type: str) -> str | None:
    if name == "reference":
        return None
    key = (name, device_type)
    if key not in _UNAVAILABLE:
        from medtrain.kernels.contrastive import unavailable_reason

        _UNAVAILABLE[key] = unavailable_reason(name, device_type)
    return _UNAVAILABLE[key]


def resolve_contrastive_impl(impl: str, device_type: str = "cpu") -> str:
    """Name of the implementation `impl` refers to ("auto" -> best available for the device).

    "auto" honours MEDTRAIN_CONTRASTIVE_IMPL; when no fused backend loads it falls back to the
    reference with one warning per process.
    """
    global _warned_fallback
    if impl == "auto":
        forced = os.environ.get(IMPL_ENV, "").strip()
        if forced and forced != "auto":
            return resolve_contrastive_impl(forced, device_type)
        reasons = []
        for name in (*AUTO_ORDER.get(device_type, ()), "reference"):
            if name not in CONTRASTIVE_IMPLS:
                continue
            reason = _unavailable(name, device_type)
            if reason is None:
                if name == "reference" and reasons and not _warned_fallback:
                    _warned_fallback = True
                    warnings.warn(
                        "no fused contrastive loss available on "
                        f"{device_type} ({'; '.join(reasons)}); using the materialized "
                        f"reference (memory O(b * B)). Set {IMPL_ENV}=reference to silence.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return name
            reasons.append(f"{name}: {reason}")
    if impl not in CONTRASTIVE_IMPLS:
        valid = ", ".join(["auto", *sorted(CONTRASTIVE_IMPLS)])
        raise ValueError(f"unknown contrastive implementation {impl!r}; valid: {valid}")
    return impl


def contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    impl: str = "auto",
) -> Tensor:
    """Symmetric InfoNCE over the global batch; see kernels/contrastive/reference.py."""
    fn = CONTRASTIVE_IMPLS[resolve_contrastive_impl(impl, image_emb.device.type)]
    return fn(image_emb, text_emb, logit_scale, group=group)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy (fp32) of (M, V) logits at masked positions; 0 with grad if M == 0.

    Labels equal to -100 are ignored. Sync-free: sum / max(count, 1).
    """
    logits = logits.float()  # (M, V)
    total = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
    count = (labels != -100).sum().clamp_min(1)
    return total / count


def compute_losses(
    out: dict, cfg: LossConfig, *, group: dist.ProcessGroup | None = None
) -> dict[str, Tensor]:
    """Weighted total from model outputs.

    `out`: image_emb (B, E), text_emb (B, E), logit_scale (), mlm_logits (M, V) | None,
    mlm_labels (M,) | None. Returns {"loss", "contrastive", "mlm"}; a term whose weight is 0
    (or, for MLM, without logits) is left out.
    """
    terms: dict[str, Tensor] = {}
    loss: Tensor | None = None
    if cfg.contrastive_weight > 0:
        con = contrastive_loss(
            out["image_emb"],
            out["text_emb"],
            out["logit_scale"],
            group=group,
            impl=cfg.contrastive_impl,
        )
        terms["contrastive"] = con
        loss = cfg.contrastive_weight * con
    mlm_logits = out.get("mlm_logits")
    if cfg.mlm_weight > 0 and mlm_logits is not None:
        labels = out.get("mlm_labels")
        if labels is None:
            raise ValueError("out has mlm_logits but no mlm_labels")
        mlm = mlm_loss(mlm_logits, labels)
        terms["mlm"] = mlm
        loss = cfg.mlm_weight * mlm if loss is None else loss + cfg.mlm_weight * mlm
    if loss is None:
        raise ValueError(
            "no loss term computed: contrastive weight is 0 and there are no MLM logits"
        )
    return {"loss": loss, **terms}
