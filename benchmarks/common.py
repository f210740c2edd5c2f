"""Shared benchmark plumbing: environment record, timing statistics, JSONL + Markdown output."""

from __future__ import annotations

import datetime as dt
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict:
    import deepspeed
    import timm
    import transformers

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()}"
    return {
        "device": device,
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "date": dt.date.today().isoformat(),
    }


def time_fn(fn: Callable[[], None], *, warmup: int, iters: int) -> dict[str, float]:
    """Median and p20/p80 wall seconds of `fn` after warm-up (CPU; GPU code uses CUDA events)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    q = statistics.quantiles(times, n=5)
    return {"median_s": statistics.median(times), "p20_s": q[0], "p80_s": q[3]}


def write_results(name: str, records: list[dict], markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(exist_ok=True)
    jsonl = RESULTS / f"{name}.jsonl"
    with jsonl.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    md = RESULTS / f"{name}.md"
    md.write_text(markdown)
    return jsonl, md


def time_cuda(
    fn: Callable[[], None], *, warmup_ms: int = 25, rep_ms: int = 100
) -> dict[str, float]:
    """Median and p20/p80 seconds of GPU work: triton.testing.do_bench (CUDA events, L2 flushed
    between runs) after `warmup_ms` of warm-up. Same keys as `time_fn`."""
    from triton.testing import do_bench

    med, p20, p80 = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
    return {"median_s": med / 1e3, "p20_s": p20 / 1e3, "p80_s": p80 / 1e3}


def time_cpu_fn(fn: Callable[[], None], *, warmup: int, iters: int) -> dict[str, float]:
    """Like `time_fn` but in CPU seconds of this process (time.process_time): the per-core cost
    of single-threaded code, unaffected by other processes sharing the cores."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    q = statistics.quantiles(times, n=5)
    return {"median_s": statistics.median(times), "p20_s": q[0], "p80_s": q[3]}
