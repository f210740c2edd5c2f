"""Training-recipe settings (owned by medtrain.train)."""

from __future__ import annotations

import math
from dataclasses import dataclass

PRECISIONS = ("bf16", "fp32", "auto")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps
    micro_batch_size: int = 16  # per rank
    # Global batch = micro_batch_size x grad_accum_steps x world_size: set one of the two below and
    # the other is derived at launch (0 = derive). Setting both requires they agree.
    grad_accum_steps: int = 0
    global_batch_size: int = 0
    lr: float = 1e-4
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    warmup_fraction: float = 0.1  # linear warmup over this fraction of steps
    weight_decay: float = 0.05  # not applied to norms, biases, logit scale, position tables
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0  # global-norm clipping (DeepSpeed's own default is 0 = off)
    zero_stage: int = 2
    # bf16 | fp32 | auto: bf16 where the device computes it natively (CUDA with bf16; CPUs with
    # AVX512-BF16 or AMX), fp32 elsewhere (emulated bf16 matmuls are ~50x slower than fp32).
    precision: str = "bf16"
    ds_config: str = ""  # base DeepSpeed JSON; "" = ds_configs/zero{stage}_bf16.json
    activation_checkpointing: bool = False
    seed: int = 0
    out_dir: str = "runs/tiny-cpu"
    log_every: int = 10
    eval_every: int = 0  # 0 = only at the end
    ckpt_every: int = 0  # 0 = only at the end
    keep_last: int = 3  # complete checkpoints kept (older ones deleted); 0 = keep all
    # Numerics: a step whose loss or gradient norm is non-finite on any rank is skipped on every
    # rank (ours, or DeepSpeed's overflow check); this many skipped steps in a row stop the run.
    max_bad_steps: int = 10
    spike_window: int = 50  # loss-spike detector: z-score of the step loss over this many steps
    spike_zscore: float = 6.0  # log the batch's sample ids above this z-score; 0 = off
    # Hung ranks: collective timeout, and a watchdog that dumps every thread's stack and exits
    # when a step takes longer than watchdog_factor x the median step (at least watchdog_min_s).
    dist_timeout_min: float = 10.0
    watchdog_factor: float = 20.0  # 0 = no watchdog
    watchdog_min_s: float = 120.0
    watchdog_warmup_steps: int = 3  # steps not timed (compilation, allocator warm-up)

    def __post_init__(self) -> None:
        for name in ("lr", "eps", "weight_decay", "grad_clip", "min_lr_ratio", "warmup_fraction"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"train.{name} must be finite, got {getattr(self, name)}")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("train.lr and train.eps must be > 0, weight_decay and grad_clip >= 0")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"train.betas must be two values in [0, 1), got {self.betas}")
        if self.log_every < 1 or self.eval_every < 0 or self.ckpt_every < 0:
            raise ValueError("train.log_every must be >= 1, eval_every and ckpt_every >= 0")
        if self.steps < 1 or self.micro_batch_size < 1:
            raise ValueError("train.steps and train.micro_batch_size must be >= 1")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"train.zero_stage must be 0-3, got {self.zero_stage}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"train.precision must be one of {list(PRECISIONS)}, got {self.precision!r}"
            )
        if not 0 <= self.warmup_fraction < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("train.warmup_fraction must be in [0, 1), min_lr_ratio in [0, 1]")
        if self.keep_last < 0 or self.max_bad_steps < 1 or self.spike_window < 2:
            raise ValueError("train.keep_last must be >= 0, max_bad_steps >= 1, spike_window >= 2")
        for name in ("spike_zscore", "dist_timeout_min", "watchdog_factor", "watchdog_min_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"train.{name} must be finite and >= 0, got {value}")
        if self.dist_timeout_min <= 0 or self.watchdog_warmup_steps < 0:
            raise ValueError("train.dist_timeout_min must be > 0, watchdog_warmup_steps >= 0")
        if self.grad_accum_steps < 0 or self.global_batch_size < 0:
            raise ValueError("train.grad_accum_steps / global_batch_size must be >= 0")

    def batch_layout(self, world_size: int) -> tuple[int, int, int]:
        """(micro, accum, global) with global = micro x accum x world; derives the unset one."""
        micro, accum, glob = self.micro_batch_size, self.grad_accum_steps, self.global_batch_size
        per_step = micro * world_size
        if glob and accum and glob != per_step * accum:
            raise ValueError(
                f"train.global_batch_size {glob} != micro {micro} x accum {accum} x world "
                f"{world_size}; set only one of grad_accum_steps / global_batch_size"
            )
        if glob:
            if glob % per_step:
                raise ValueError(
                    f"train.global_batch_size {glob} is not a multiple of micro {micro} x world "
                    f"{world_size} = {per_step}"
                )
            accum = glob // per_step
        accum = accum or 1
        return micro, accum, per_step * accum
