"""Numerics guard: skip non-finite steps on every rank, stop after too many, flag loss spikes.

Why a gate on the *inner* optimizer: DeepSpeed's wrappers (ZeRO-1/2/3, the bf16 wrappers) own the
gradients at step time (flat fp32 partitions, not `param.grad`) and call the client torch AdamW's
`step()` once per parameter (sub-)group. Checking there sees exactly the gradients about to be
applied, at every ZeRO stage. DeepSpeed 0.19.8 reads `engine.optimizer.overflow` after each step
(engine._take_model_step): setting it when the gate refuses makes the engine count the step as
skipped (`was_step_applied()` False) and leave the LR schedule alone, like its own overflow skip.

Agreement: every decision that skips is either computed from all-reduced values (the per-step
flags tensor, DeepSpeed's already-reduced global gradient norm) or all-reduced in the gate; the
gate runs on all ranks or none (DeepSpeed's own overflow decision is agreed), with the same number
of calls per step, so no rank ever waits in a collective the others skip.

One small collective per step carries [loss non-finite, grads non-finite, stop requested, loss]
(SUM), so a SIGUSR1 seen by any one rank becomes a stop agreed by all at the same step.
"""

from __future__ import annotations

import functools
import json
import logging
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from medtrain.train.errors import TrainingDiverged

log = logging.getLogger(__name__)

LOSS, GRADS, STOP = "non-finite loss", "non-finite gradient", "stop"
OVERFLOW = "DeepSpeed overflow skip"


def nonfinite(tensors: Iterable[torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """1.0 when any tensor, or their global 2-norm, is NaN/inf, else 0.0: a () float32 tensor on
    `device`, computed there (local, no collective, no host sync)."""
    ts = [t.detach() for t in tensors if t is not None and t.numel()]
    if not ts:
        return torch.zeros((), device=device)
    norms = torch._foreach_norm(ts)  # one norm per tensor, computed in the tensors' dtype
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
    return (~torch.isfinite(total)).float().to(device)


def _all_reduce(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=op)
    return t


@dataclass
class StepResult:
    """The agreed outcome of one optimizer step (identical on every rank)."""

    step: int
    loss: float  # mean over ranks of this step's loss (nan when non-finite somewhere)
    skipped: bool
    reasons: list[str] = field(default_factory=list)
    stop: bool = False  # a rank received SIGUSR1: save now and exit
    spike_z: float | None = None  # set when the loss-spike detector fired


class StepGuard:
    """Per-step numerics bookkeeping of one rank; every public method is called on all ranks."""

    def __init__(
        self,
        *,
        max_bad_steps: int,
        spike_window: int,
        spike_zscore: float,
        device: torch.device | str = "cpu",
        spikes_file: Path | None = None,
        rank: int = 0,
    ) -> None:
        self.max_bad_steps, self.spike_zscore = max_bad_steps, spike_zscore
        self.device, self.spikes_file, self.rank = device, spikes_file, rank
        self.history: deque[float] = deque(maxlen=spike_window)
        self.bad_in_row: list[tuple[int, str]] = []  # (step, reasons) of the current bad streak
        self.skipped_total = 0
        self._flags: list[str] = []  # reasons agreed before the step (loss, grads)
        self._gate_reason: str | None = None  # reason the gate refused in this step
        self._grads_checked = False  # before_step saw this step's grads (ZeRO-0 param.grad)
        self._holder: Any = None

    @classmethod
    def for_run(cls, train: Any, *, device: Any, out_dir: Path, rank: int) -> StepGuard:
        """The guard of a training run from its TrainConfig; spikes go to out_dir/spikes.jsonl."""
        return cls(
            max_bad_steps=train.max_bad_steps,
            spike_window=train.spike_window,
            spike_zscore=train.spike_zscore,
            device=device,
            spikes_file=out_dir / "spikes.jsonl",
            rank=rank,
        )

    # ---------------------------------------------------------------- the optimizer gate

    def install(self, optimizer: Any) -> None:
        """Gate the torch optimizer that DeepSpeed's `engine.optimizer` finally steps.

        `optimizer` is `engine.optimizer`: the client AdamW itself (ZeRO-0 fp32) or a wrapper
        holding it as `.optimizer` (ZeRO-1/2/3, bf16)."""
        inner = optimizer if isinstance(optimizer, torch.optim.Optimizer) else optimizer.optimizer
        if not isinstance(inner, torch.optim.Optimizer):
            raise TypeError(f"cannot find the torch optimizer inside {type(optimizer).__name__}")
        self._holder = optimizer
        if inner is optimizer:
            optimizer.overflow = False  # the engine reads it after every step from now on
        original = inner.step

        @functools.wraps(original)  # keeps torch's LR-scheduler bookkeeping attributes
        def gated_step(*args: Any, **kwargs: Any) -> Any:
            if self._gate_refuses(inner):
                self._holder.overflow = True
                return None  # no update of parameters, moments or the step count
            return original(*args, **kwargs)

        inner.step = gated_step

    def _gate_refuses(self, inner: torch.optim.Optimizer) -> bool:
        if self._gate_reason is not None or self._flags:  # already agreed for this step
            self._gate_reason = self._gate_reason or self._flags[0]  # already in the reasons
            return True
        if inner is self._holder and self._grads_checked:
            return False  # the same param.grads, agreed in before_step: not a second pass
        bad = nonfinite((p.grad for g in inner.param_groups for p in g["params"]), self.device)
        norm = getattr(self._holder, "_global_grad_norm", None)  # reduced already by DeepSpeed
        if norm is not None:
            bad = torch.maximum(bad, nonfinite([torch.as_tensor(norm)], self.device))
        if _all_reduce(bad.reshape(1), dist.ReduceOp.MAX).item() > 0:  # the one host sync
            self._gate_reason = GRADS
            return True
        return False

    # ---------------------------------------------------------------- per step

    def before_step(
        self, loss: torch.Tensor, *, grads: Iterable[torch.Tensor] = (), stop: bool = False
    ) -> tuple[float, bool]:
        """Collective, once per optimizer step before `engine.step()`.

        loss: this rank's step loss (a 0-d tensor, mean over its micro-batches); grads: the
        `param.grad`s this rank holds (ZeRO-0: already all-reduced; other stages keep theirs in
        DeepSpeed's buffers, which the gate checks); stop: SIGUSR1 seen by this rank.
        Returns (mean loss over ranks, stop agreed). Built on the device and read back once:
        the step's only host sync besides DeepSpeed's own."""
        grads = [g for g in grads if g is not None]
        self._grads_checked = bool(grads)
        value = loss.detach().to(device=self.device, dtype=torch.float64).reshape(())
        loss_bad = (~torch.isfinite(value)).double()
        t = torch.stack(
            [
                loss_bad,
                nonfinite(grads, self.device).double(),
                torch.tensor(float(stop), dtype=torch.float64, device=self.device),
                torch.where(loss_bad > 0, torch.zeros_like(value), value),
            ]
        )  # (4,)
        _all_reduce(t)  # counts of ranks, and the sum of finite losses
        n_loss, n_grads, n_stop, total = t.tolist()
        world = dist.get_world_size() if dist.is_initialized() else 1
        self._flags = [r for r, n in ((LOSS, n_loss), (GRADS, n_grads)) if n > 0]
        self._gate_reason = None
        if self._holder is not None and isinstance(self._holder, torch.optim.Optimizer):
            self._holder.overflow = False
        mean = float("nan") if n_loss > 0 else total / world
        return mean, n_stop > 0

    def after_step(
        self, step: int, loss: float, *, applied: bool, stop: bool, ids: list[str] | None = None
    ) -> StepResult:
        """Collective only when a spike is agreed (gathers every rank's sample ids).

        applied: `engine.was_step_applied()`. Then call raise_if_diverged()."""
        reasons = list(self._flags)
        if self._gate_reason and self._gate_reason not in reasons:
            reasons.append(self._gate_reason)
        skipped = not applied or bool(reasons)
        if skipped and not reasons:
            reasons = [OVERFLOW]
        result = StepResult(step, loss, skipped, reasons, stop)
        if skipped:
            self.skipped_total += 1
            self.bad_in_row.append((step, ", ".join(reasons)))
            if self.rank == 0:
                print(
                    f"step {step}: optimizer step skipped ({', '.join(reasons)}): parameters "
                    f"and optimizer state unchanged; {len(self.bad_in_row)} in a row, "
                    f"{self.skipped_total} in total",
                    flush=True,
                )
            return result
        self.bad_in_row = []
        z = self.spike_score(loss)
        self.history.append(loss)
        if z is not None:
            result.spike_z = z
            self._record_spike(result, ids or [])
        return result

    def raise_if_diverged(self) -> None:
        """TrainingDiverged after train.max_bad_steps skipped steps in a row (called once the
        step is logged, so the last skipped step is in metrics.jsonl too)."""
        if len(self.bad_in_row) >= self.max_bad_steps:
            raise TrainingDiverged(self._diverged_message())

    def spike_score(self, loss: float) -> float | None:
        """z-score of `loss` against the last spike_window step losses; None below the threshold
        (or while the window is not full, or with the detector off)."""
        if self.spike_zscore <= 0 or len(self.history) < (self.history.maxlen or 0):
            return None
        mean = statistics.fmean(self.history)
        std = statistics.pstdev(self.history)
        std = max(std, 1e-6 * max(abs(mean), 1e-12))  # a flat window still measures a jump
        z = (loss - mean) / std
        return z if z > self.spike_zscore else None

    def _record_spike(self, result: StepResult, ids: list[str]) -> None:
        gathered: list[Any] = [ids]
        if dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, ids)  # agreed: every rank saw the same reduced loss
        if self.rank != 0:
            return
        line = {
            "step": result.step,
            "loss": result.loss,
            "zscore": result.spike_z,
            "window_mean": statistics.fmean(self.history),
            "ids": {str(r): list(x or []) for r, x in enumerate(gathered)},
        }
        log.warning(
            "loss spike at step %d (z=%.1f): sample ids %s",
            result.step,
            result.spike_z,
            line["ids"],
        )
        print(
            f"step {result.step}: loss spike (z={result.spike_z:.1f}); batch sample ids in "
            f"{self.spikes_file}",
            flush=True,
        )
        if self.spikes_file is not None:
            with self.spikes_file.open("a") as f:
                f.write(json.dumps(line) + "\n")

    def _diverged_message(self) -> str:
        first, last = self.bad_in_row[0][0], self.bad_in_row[-1][0]
        why = sorted({r for _, r in self.bad_in_row})
        return (
            f"training diverged: {len(self.bad_in_row)} optimizer steps in a row were skipped "
            f"(steps {first}-{last}: {'; '.join(why)}; train.max_bad_steps="
            f"{self.max_bad_steps}). Try a lower train.lr (or a longer warm-up) or a smaller "
            "train.grad_clip, or check the data of those steps (RUN/spikes.jsonl)"
        )


def weights_finite(params: Iterable[torch.Tensor], device: torch.device | str = "cpu") -> bool:
    """Collective: True when every rank's parameters (ZeRO-3: its partitions) are finite."""
    bad = nonfinite((getattr(p, "ds_tensor", p) for p in params), device)
    return _all_reduce(bad.reshape(1), dist.ReduceOp.MAX).item() == 0
