"""AdamW parameter groups of a fine-tuning run for train/engine.build_engine(groups=...):
backbone at train.lr, head at train.lr x finetune.head_lr_mult (the warmup + cosine LambdaLR
scales each group's own initial lr, so the schedule shapes both). Linear probe: only the head's
groups exist.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def finetune_groups(
    model: nn.Module, groups: dict[str, list[torch.Tensor]], lr: float, head_lr: float, wd: float
) -> list[dict[str, Any]]:
    """AdamW groups: (backbone, head) x (decay, no decay: 1-d tensors and the backbone's
    no_weight_decay names), empty groups left out."""
    names = {id(p): n for n, p in model.named_parameters()}
    skip = set()
    if hasattr(model, "backbone") and hasattr(model.backbone, "no_weight_decay"):
        skip = {f"backbone.{n}" for n in model.backbone.no_weight_decay()}
    out = []
    for key, group_lr in (("backbone", lr), ("head", head_lr)):
        params = [p for p in groups.get(key, []) if p.requires_grad]
        no = [p for p in params if p.ndim <= 1 or names.get(id(p)) in skip]
        yes = [p for p in params if not (p.ndim <= 1 or names.get(id(p)) in skip)]
        for ps, decay in ((yes, wd), (no, 0.0)):
            if ps:
                out.append({"params": ps, "weight_decay": decay, "lr": group_lr, "name": key})
    return out
