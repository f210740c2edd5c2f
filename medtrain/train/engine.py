"""DeepSpeed set-up: process group, parameter groups, optimizer, schedule, engine config."""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import deepspeed
import torch
import yaml
from deepspeed.accelerator import get_accelerator
from torch import nn

from medtrain.train.config import TrainConfig
from medtrain.train.schedule import warmup_cosine

log = logging.getLogger(__name__)
PACKAGE_DS_CONFIGS = Path(__file__).parents[1] / "ds_configs"  # package data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(timeout_min: float = 10.0) -> tuple[int, int]:
    """Join the launcher's process group, or make a 1-process one for plain `medtrain pretrain`.

    timeout_min (train.dist_timeout_min): how long a collective waits for a missing rank before
    failing (torch's default, 30 min, hides a hung node for half an hour).
    Returns (rank, world_size). DeepSpeed picks nccl on GPUs and gloo/ccl on the CPU accelerator.
    """
    if "RANK" not in os.environ:  # not started by deepspeed/torchrun/srun
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(verbose=False, timeout=timedelta(minutes=timeout_min))
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def bf16_unsupported(device_type: str) -> str | None:
    """None when `device_type` computes bf16 natively, else why not (one line)."""
    if device_type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no native bf16"
    if device_type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        if any(getattr(torch.cpu, name, lambda: False)() for name in checks):
            return None
        return "this CPU has neither AVX512-BF16 nor AMX (bf16 matmuls would be emulated)"
    return None


def resolve_precision(precision: str, device_type: str) -> tuple[str, str]:
    """train.precision -> ("bf16" | "fp32", reason); "auto" picks bf16 where it is native."""
    if precision != "auto":
        return precision, "set explicitly"
    why = bf16_unsupported(device_type)
    return ("bf16", f"native bf16 on {device_type}") if why is None else ("fp32", why)


def resolve_run_precision(train: TrainConfig, out_dir: Path, *, resume: bool) -> str | None:
    """Set train.precision "auto" -> bf16 | fp32 once per run; a resumed run keeps what its
    config.yaml in `out_dir` recorded (its checkpoints hold that precision's optimizer state).
    Returns the line to print, or None when the precision was set explicitly."""
    if train.precision != "auto":
        return None
    saved, before = out_dir / "config.yaml", None
    if resume and saved.is_file():
        before = (yaml.safe_load(saved.read_text()) or {}).get("train", {}).get("precision")
    if before in ("bf16", "fp32"):
        train.precision, why = before, "as the run being resumed"
    else:
        train.precision, why = resolve_precision("auto", get_accelerator().device_name())
    return f"train.precision=auto -> {train.precision} ({why})"


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
    """train.ds_config as given (absolute, or relative to the working directory); a
    `ds_configs/NAME.json` that is not there comes from the package (medtrain/ds_configs/,
    which the checkout's top-level ds_configs/ links to). Default: ds_configs/zero{stage}_bf16."""
    name = cfg.ds_config or f"ds_configs/zero{cfg.zero_stage}_bf16.json"
    path = Path(name)
    if path.is_file():
        return path
    shipped = PACKAGE_DS_CONFIGS / path.name
    if path.parent == Path("ds_configs") and shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"DeepSpeed config {name} not found (train.ds_config: a JSON path, or ds_configs/NAME "
        f"with NAME one of {sorted(p.name for p in PACKAGE_DS_CONFIGS.glob('*.json'))})"
    )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def deepspeed_config(
    cfg: TrainConfig, world_size: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Base JSON + the values the run config owns (batch layout, stage, precision, clipping)."""
    path = resolve_ds_config_path(cfg)
    log.info("DeepSpeed config %s", path)
    ds = json.loads(path.read_text())
    micro, accum, glob = cfg.batch_layout(world_size)
    ds["train_micro_batch_size_per_gpu"] = micro
    ds["gradient_accumulation_steps"] = accum
    ds["train_batch_size"] = glob
    ds["gradient_clipping"] = cfg.grad_clip
    ds.setdefault("zero_optimization", {})["stage"] = cfg.zero_stage
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": cfg.precision == "bf16"}
    ds.pop("fp16", None)
    ds.setdefault("zero_allow_untested_optimizer", True)  # our client torch AdamW
    return _merge(ds, overrides or {})


def build_engine(
    model: nn.Module,
    cfg: TrainConfig,
    world_size: int,
    overrides: dict[str, Any] | None = None,
    *,
    groups: list[dict[str, Any]] | None = None,
):
    """-> (engine, optimizer, scheduler). Optimizer: torch AdamW (fused kernel on CUDA).
    `overrides` are merged into the DeepSpeed JSON (e.g. the checkpoint store's). `groups`:
    explicit AdamW parameter groups (own lr / weight decay each; fine-tuning's backbone and head),
    default `param_groups(model, cfg.weight_decay)`; the schedule scales each group's own lr."""
    if cfg.precision == "bf16":
        # DeepSpeed casts parameters only; floating buffers (Swin's shifted-window attention mask)
        # must follow or attention mixes fp32 and bf16.
        model.to(torch.bfloat16)
    opt = torch.optim.AdamW(
        groups if groups is not None else param_groups(model, cfg.weight_decay),
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
