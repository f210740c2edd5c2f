"""The numerics guard: one rank's NaN gradient or loss skips the step on every rank (parameters
and AdamW moments untouched), skipped steps in a row stop the run, SIGUSR1 on one rank is a stop
agreed by all, and the loss-spike detector logs every rank's sample ids."""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medtrain.train.errors import TrainingDiverged
from medtrain.train.guard import GRADS, LOSS, OVERFLOW, StepGuard, weights_finite


def _model_and_opt() -> tuple[torch.nn.Linear, torch.optim.AdamW]:
    torch.manual_seed(0)  # the same weights on both ranks, as DeepSpeed broadcasts them
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=0.1)


def _snapshot(model, opt) -> list[torch.Tensor]:
    moments = [v.clone() for s in opt.state.values() for v in s.values()]
    return [p.detach().clone() for p in model.parameters()] + moments


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _step(guard, model, opt, step, *, nan_grad=False, loss_value=1.0, stop=False, ids=()):
    """One optimizer step as the loop does it (ZeRO-0 style: the optimizer is the holder)."""
    opt.zero_grad()
    model(torch.ones(1, 3)).sum().backward()
    if nan_grad:
        model.weight.grad[0, 0] = float("nan")
    loss, agreed_stop = guard.before_step(torch.tensor(loss_value), stop=stop)
    opt.step()
    res = guard.after_step(step, loss, applied=not opt.overflow, stop=agreed_stop, ids=list(ids))
    guard.raise_if_diverged()
    return res


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A rank that disagrees would leave the other waiting in a collective: fail fast instead.
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=30))
    try:
        model, opt = _model_and_opt()
        guard = StepGuard(
            max_bad_steps=2,
            spike_window=3,
            spike_zscore=3.0,
            spikes_file=Path(out) / "spikes.jsonl",
            rank=rank,
        )
        guard.install(opt)
        record: dict = {}

        # A good step first (creates the AdamW moments), then rank 1's gradient is NaN.
        assert not _step(guard, model, opt, 1).skipped
        before = _snapshot(model, opt)
        res = _step(guard, model, opt, 2, nan_grad=rank == 1)
        record["grad_skip"] = [res.skipped, res.reasons, _same(before, _snapshot(model, opt))]
        record["adam_steps"] = [int(s["step"]) for s in opt.state.values()]

        # Rank 0's loss is non-finite: both skip; that is 2 in a row -> TrainingDiverged.
        try:
            _step(guard, model, opt, 3, loss_value=float("nan") if rank == 0 else 1.0)
            record["diverged"] = None
        except TrainingDiverged as e:
            record["diverged"] = str(e)
        record["unchanged_after_loss_skip"] = _same(before, _snapshot(model, opt))

        # A good step resets the streak; SIGUSR1 seen by rank 1 only is a stop agreed by both.
        guard.bad_in_row.clear()
        res = _step(guard, model, opt, 4, stop=rank == 1)
        record["stop"] = [res.skipped, res.stop, not _same(before, _snapshot(model, opt))]

        # Spike: flat losses (3 steps fill the window) then a jump; ids of both ranks logged.
        for step, value in zip((5, 6, 7), (2.0, 2.1, 1.9), strict=True):
            assert _step(guard, model, opt, step, loss_value=value).spike_z is None
        res = _step(guard, model, opt, 8, loss_value=9.0, ids=[f"r{rank}-a", f"r{rank}-b"])
        record["spike_z"] = res.spike_z
        record["skipped_total"] = guard.skipped_total

        # Non-finite weights on one rank: every rank sees it (the loop then refuses to save).
        with torch.no_grad():
            if rank == 1:
                model.bias[0] = float("inf")
        record["weights_finite"] = weights_finite(model.parameters())
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_agree_on_skips_stop_and_spikes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children share the imported modules (spawn would re-import torch: ~10 s)
    mp.start_processes(_worker, args=(port, str(tmp_path)), nprocs=2, start_method="fork")
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rec in records:
        assert rec["grad_skip"] == [True, [GRADS], True]  # rank 0's own grads were finite
        assert rec["adam_steps"] == [1, 1]  # AdamW's step count did not advance either
        assert rec["diverged"].startswith(
            "training diverged: 2 optimizer steps in a row were skipped (steps 2-3: "
            f"{GRADS}; {LOSS}; train.max_bad_steps=2)"
        )
        assert "lower train.lr" in rec["diverged"]
        assert rec["unchanged_after_loss_skip"] is True
        assert rec["stop"] == [False, True, True]
        assert rec["spike_z"] > 3.0
        assert rec["skipped_total"] == 2
        assert rec["weights_finite"] is False
    lines = (tmp_path / "spikes.jsonl").read_text().splitlines()
    assert len(lines) == 1  # rank 0 writes it, once
    spike = json.loads(lines[0])
    assert spike["step"] == 8 and spike["loss"] == 9.0
    assert spike["ids"] == {"0": ["r0-a", "r0-b"], "1": ["r1-a", "r1-b"]}


class _Wrapper:
    """Stands in for DeepSpeed's ZeRO/bf16 wrappers: holds the torch optimizer, has .overflow and
    the global gradient norm it computed (already reduced over ranks)."""

    def __init__(self, opt: torch.optim.Optimizer, norm: float) -> None:
        self.optimizer, self.overflow, self._global_grad_norm = opt, False, norm


def test_gate_reads_the_wrappers_global_norm_and_counts_deepspeed_skips(tmp_path: Path) -> None:
    model, opt = _model_and_opt()
    wrapper = _Wrapper(opt, norm=float("inf"))
    guard = StepGuard(max_bad_steps=3, spike_window=2, spike_zscore=0.0, rank=0)
    guard.install(wrapper)
    model(torch.ones(1, 3)).sum().backward()  # finite grads, but the wrapper's norm is inf
    before = _snapshot(model, opt)
    guard.before_step(torch.tensor(1.0))
    wrapper.optimizer.step()
    assert wrapper.overflow is True and _same(before, _snapshot(model, opt))
    assert guard.after_step(1, 1.0, applied=False, stop=False).reasons == [GRADS]
    # DeepSpeed skipped on its own (the gate never ran): still a skipped step, counted.
    guard.before_step(torch.tensor(1.0))
    res = guard.after_step(2, 1.0, applied=False, stop=False)
    assert res.skipped and res.reasons == [OVERFLOW] and len(guard.bad_in_row) == 2
    guard.raise_if_diverged()  # 2 < 3
    guard.after_step(3, 1.0, applied=False, stop=False)
    with pytest.raises(TrainingDiverged, match=r"3 optimizer steps in a row .*steps 1-3"):
        guard.raise_if_diverged()


def test_spike_zscore_window() -> None:
    guard = StepGuard(max_bad_steps=1, spike_window=4, spike_zscore=4.0)
    assert guard.spike_score(100.0) is None  # window not full yet
    guard.history.extend([1.0, 1.2, 0.8, 1.0])  # mean 1.0, std ~0.141
    assert guard.spike_score(1.5) is None  # z ~3.5
    assert guard.spike_score(1.7) == pytest.approx(0.7 / 0.1414, rel=1e-3)
    assert guard.spike_score(0.0) is None  # drops are not spikes
    guard.history.clear()
    guard.history.extend([2.0] * 4)  # a flat window still measures a jump
    assert guard.spike_score(2.5) is not None
    off = StepGuard(max_bad_steps=1, spike_window=2, spike_zscore=0.0)
    off.history.extend([1.0, 1.0])
    assert off.spike_score(1e9) is None
