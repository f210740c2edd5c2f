"""DeepSpeed engine of a fine-tuning run: train/engine.build_engine's set-up (AdamW, warmup +
cosine, the run's DeepSpeed JSON: ZeRO stage, bf16, clipping) with per-group learning rates:
backbone at train.lr, head at train.lr x finetune.head_lr_mult (LambdaLR scales each group's own
initial lr, so the schedule shapes both). Linear probe: only the head's group exists.

TODO(train/engine): build_engine could take `groups` itself; this mirrors it until then.
"""

from __future__ import annotations

from typing import Any

import deepspeed
import torch
from torch import nn

from medtrain.train.config import TrainConfig
from medtrain.train.engine import deepspeed_config
from medtrain.train.schedule import warmup_cosine


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


def build_finetune_engine(
    model: nn.Module,
    groups: list[dict[str, Any]],
    cfg: TrainConfig,
    world_size: int,
    overrides: dict[str, Any] | None = None,
):
    """-> (engine, optimizer, scheduler), as train.engine.build_engine with explicit groups."""
    if cfg.precision == "bf16":
        model.to(torch.bfloat16)
    opt = torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        fused=torch.cuda.is_available() or None,
    )
    sched = warmup_cosine(
        opt, total=cfg.steps, warmup_fraction=cfg.warmup_fraction, min_ratio=cfg.min_lr_ratio
    )
    engine, opt, _, sched = deepspeed.initialize(
        model=model,
        optimizer=opt,
        lr_scheduler=sched,
        config=deepspeed_config(cfg, world_size, overrides),
    )
    return engine, opt, sched
