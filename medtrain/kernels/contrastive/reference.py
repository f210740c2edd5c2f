"""Reference (materialized, fp32) symmetric InfoNCE over the global batch.

Semantics of open_clip `ClipLoss(local_loss=True, gather_with_grad=True)`: each rank scores its
local rows against all gathered columns. The returned value is the mean of the per-rank losses
(identical on every rank); gradients are open_clip's per-rank ones.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def world_info(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """(world_size, rank) of `group`; (1, 0) when torch.distributed is not initialized."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


def _check(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> None:
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            "image_emb and text_emb must both be (B_loc, E), got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")


def contrastive_loss_reference(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
) -> Tensor:
    """Global-batch CLIP loss from L2-normalized (B_loc, E) embeddings and exp'd logit scale."""
    _check(image_emb, text_emb, logit_scale)
    img = image_emb.float()  # (b, E)
    txt = text_emb.float()  # (b, E)
    scale = logit_scale.float().reshape(())
    world, rank = world_info(group)
    b = img.shape[0]

    if world > 1:
        from torch.distributed.nn.functional import all_gather

        img_all = torch.cat(all_gather(img, group=group))  # (B, E), autograd through gather
        txt_all = torch.cat(all_gather(txt, group=group))  # (B, E)
    else:
        img_all, txt_all = img, txt

    logits_per_image = scale * img @ txt_all.T  # (b, B)
    logits_per_text = scale * txt @ img_all.T  # (b, B)
    labels = rank * b + torch.arange(b, device=img.device)  # (b,)
    local = F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)
    local = local / 2
    if world == 1:
        return local

    total = local.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    global_mean = total / world
    # Value: the global mean; gradient: open_clip's per-rank one.
    return local + (global_mean - local).detach()
