"""DeepSpeed set-up: process group, parameter groups, optimizer, schedule, engine config."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import deepspeed
import torch
from torch import nn

from medtrain.train.config import TrainConfig
from medtrain.train.schedule import warmup_cosine

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> tuple[int, int]:
    """Join the launcher's process group, or make a 1-process one for plain `medtrain pretrain`.

    Returns (rank, world_size). DeepSpeed picks nccl on GPUs and gloo/ccl on the CPU accelerator.
    """
    if "RANK" not in os.environ:  # not started by deepspeed/torchrun/srun
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(verbose=False)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on norms, biases (all 1-d), logit scale, position tables."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name in skip:  # 1-d covers every norm weight and bias
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def resolve_ds_config_path(cfg: TrainConfig) -> Path:
    name = cfg.ds_config or f"ds_configs/zero{cfg.zero_stage}_bf16.json"
    for base in (Path.cwd(), REPO_ROOT):
        if (base / name).is_file():
            return base / name
    raise FileNotFoundError(f"DeepSpeed config {name} not found (looked in . and {REPO_ROOT})")


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """Base JSON + the values the run config owns (batch layout, stage, precision, clipping)."""
    ds = json.loads(resolve_ds_config_path(cfg).read_text())
    micro, accum, glob = cfg.batch_layout(world_size)
    ds["train_micro_batch_size_per_gpu"] = micro
    ds["gradient_accumulation_steps"] = accum
    ds["train_batch_size"] = glob
    ds["gradient_clipping"] = cfg.grad_clip
    ds.setdefault("zero_optimization", {})["stage"] = cfg.zero_stage
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": cfg.precision == "bf16"}
    ds.pop("fp16", None)
    ds.setdefault("zero_allow_untested_optimizer", True)  # our client torch AdamW
    return ds


def build_engine(model: nn.Module, cfg: TrainConfig, world_size: int):
    """-> (engine, optimizer, scheduler). Optimizer: torch AdamW (fused kernel on CUDA)."""
    if cfg.precision == "bf16":
        # DeepSpeed casts parameters only; floating buffers (Swin's shifted-window attention mask)
        # must follow or attention mixes fp32 and bf16.
        model.to(torch.bfloat16)
    opt = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        fused=torch.cuda.is_available() or None,
    )
    sched = warmup_cosine(
        opt, total=cfg.steps, warmup_fraction=cfg.warmup_fraction, min_ratio=cfg.min_lr_ratio
    )
    engine, opt, _, sched = deepspeed.initialize(
        model=model, optimizer=opt, lr_scheduler=sched, config=deepspeed_config(cfg, world_size)
    )
    return engine, opt, sched
