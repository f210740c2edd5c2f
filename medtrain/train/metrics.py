"""Rank-0 metric sink: tensorboard scalars + a JSON-lines file + a short console line."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch


def peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def drop_after(path: Path, step: int) -> int:
    """Remove the lines of metrics.jsonl logged after `step` (a resumed run logs those steps
    again), atomically (temporary file + rename). Returns how many lines were dropped."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines(keepends=True):
        try:
            later = json.loads(line).get("step", 0) > step
        except json.JSONDecodeError:  # a line torn by a crash mid-write
            later = True
        if later:
            dropped += 1
        else:
            keep.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            f.writelines(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return dropped


class MetricsLogger:
    """resumed_step: the step a resumed run continues from; metrics.jsonl lines and TensorBoard
    events after it are dropped, so every step is logged once."""

    def __init__(self, out_dir: Path, enabled: bool, *, resumed_step: int | None = None) -> None:
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            purge = None
            if resumed_step is not None:
                drop_after(out_dir / "metrics.jsonl", resumed_step)
                purge = resumed_step + 1
            self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=purge)
            self.jsonl = (out_dir / "metrics.jsonl").open("a")

    def log(self, step: int, scalars: dict[str, float], *, echo: bool = True) -> None:
        if not self.enabled:
            return
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        self.jsonl.flush()
        if echo:
            shown = ("eval/auc/macro", "eval/i2t_R@1", "eval/t2i_R@1")
            keys = [k for k in scalars if k.startswith("loss/") or k in shown]
            extra = " ".join(f"{k.split('/', 1)[1]}={scalars[k]:.4f}" for k in keys)
            rate = scalars.get("perf/samples_per_s")
            tail = f" {rate:.1f} samples/s" if rate else ""
            print(f"step {step}: {extra}{tail}", flush=True)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()
