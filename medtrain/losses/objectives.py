"""Training losses: global-batch contrastive (through the contrastive registry), MLM, composite."""

from __future__ import annotations

import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from medtrain.kernels.contrastive.dispatch import get_contrastive, resolve_contrastive_impl
from medtrain.losses.config import LossConfig

__all__ = ["compute_losses", "contrastive_loss", "mlm_loss", "resolve_contrastive_impl"]


def contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    impl: str = "auto",
) -> Tensor:
    """Symmetric InfoNCE over the global batch (kernels/contrastive/reference.py semantics).

    `impl` names an entry of the contrastive registry (kernels/contrastive/dispatch.py); "auto"
    takes the best implementation that runs on the embeddings' device.
    """
    return get_contrastive(impl)(image_emb, text_emb, logit_scale, group=group)


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
