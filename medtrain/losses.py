"""Training losses: global-batch contrastive (dispatched by implementation), MLM, composite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from medtrain.kernels.contrastive.reference import contrastive_loss_reference

ContrastiveFn = Callable[..., Tensor]

# name -> fn(image_emb, text_emb, logit_scale, *, group) -> scalar loss. Fused implementations
# register here on import; "auto" takes the first registered name in AUTO_ORDER.
CONTRASTIVE_IMPLS: dict[str, ContrastiveFn] = {"reference": contrastive_loss_reference}
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("triton", "cpp", "reference"),
    "cpu": ("cpp", "reference"),
}


def resolve_contrastive_impl(impl: str, device_type: str = "cpu") -> str:
    """Name of the implementation `impl` refers to ("auto" -> best available for the device)."""
    if impl == "auto":
        order = AUTO_ORDER.get(device_type, ("reference",))
        return next(name for name in (*order, "reference") if name in CONTRASTIVE_IMPLS)
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


@dataclass(kw_only=True, slots=True)
class LossConfig:
    """Weights of the loss terms and the contrastive implementation."""

    contrastive_weight: float = 1.0
    mlm_weight: float = 1.0
    contrastive_impl: str = "auto"

    def __post_init__(self) -> None:
        if self.contrastive_weight < 0 or self.mlm_weight < 0:
            raise ValueError(
                "loss weights must be >= 0, got "
                f"contrastive_weight={self.contrastive_weight}, mlm_weight={self.mlm_weight}"
            )
        if self.contrastive_weight == 0 and self.mlm_weight == 0:
            raise ValueError("at least one of loss.contrastive_weight, loss.mlm_weight must be > 0")


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
