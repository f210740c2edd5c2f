"""Long runs that survive (issue 9), end to end on fixture data, fp32, tiny model:
a diverging run skips its non-finite steps, stops with exit 3 and never checkpoints bad weights;
SIGUSR1 saves at an agreed step and exits 0, and the resumed run repeats the uninterrupted run's
losses exactly with each step logged once; a SIGSTOPped rank ends a 2-rank job through the
watchdog with every thread's stack dumped.

Every run gets its own train.out_dir under tmp_path and runs in a temporary working directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

FP32 = {"train.precision": "fp32"}


def losses(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss/total" in r]


def start(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the test can end all of it
    )


def wait_for_step(proc: subprocess.Popen, run: Path, step: int, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended before step {step}:\n{out[-3000:]}\n{err[-3000:]}")
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and len(losses(run)) >= step:
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout} s")


def end_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_diverging_run_skips_steps_stops_with_exit_3_and_keeps_good_checkpoints(
    synth_mimic, tokenizer_dir, tmp_path, run_cli, tiny_overrides
):
    """lr=1e6 at ZeRO-0 (no DeepSpeed overflow check there: our gate is what skips)."""
    run = tmp_path / "run"
    extra = {"train.lr": 1e6, "train.steps": 8, "train.max_bad_steps": 3, "train.ckpt_every": 1}
    extra["train.zero_stage"] = 0
    sets = tiny_overrides(synth_mimic, tokenizer_dir, run, **FP32, **extra)
    proc = run_cli("pretrain", "--preset", "tiny-cpu", *sets, check=False)
    assert proc.returncode == 3, proc.stderr[-3000:]
    err = [x for x in proc.stderr.splitlines() if x.startswith("medtrain: error:")]
    assert len(err) == 1 and "training diverged: 3 optimizer steps in a row were skipped" in err[0]
    assert "train.max_bad_steps=3" in err[0] and "lower train.lr" in err[0]
    skipped = [x for x in proc.stdout.splitlines() if "optimizer step skipped (" in x]
    assert len(skipped) == 3 and "3 in a row, 3 in total" in skipped[-1]
    reasons = skipped[0].split("skipped (", 1)[1].split(")", 1)[0].split(", ")
    assert len(reasons) == len(set(reasons)), skipped[0]  # each reason named once
    first_bad = int(skipped[0].split(":")[0].removeprefix("step "))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["skipped_steps"] == 3
    assert summary["step"] == first_bad + 2
    assert losses(run)[-1]["train/skipped_steps"] == 3.0
    # Saves were deferred during the streak: `latest` names the last applied step's checkpoint,
    # and no checkpoint holds a non-finite weight.
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step{first_bad - 1}", (latest, first_bad)
    assert f"newest checkpoint written: step {first_bad - 1}" in err[0]
    tags = sorted(p for p in (run / "checkpoints").glob("step*") if p.is_dir())
    assert tags and all(int(p.name.removeprefix("step")) < first_bad for p in tags)
    for tag in tags:
        # The test's own freshly written file (not an untrusted checkpoint).
        module = torch.load(tag / "mp_rank_00_model_states.pt", weights_only=False)["module"]
        assert all(torch.isfinite(v).all() for v in module.values() if v.is_floating_point())


@pytest.mark.slow
def test_sigusr1_saves_at_agreed_step_and_resume_repeats_losses_exactly(
    synth_mimic, tokenizer_dir, tmp_path, run_cli, tiny_overrides, subprocess_env
):
    steps = {"train.steps": 6, **FP32}
    straight = tmp_path / "straight"
    run_cli("pretrain", *tiny_overrides(synth_mimic, tokenizer_dir, straight, **steps))

    run = tmp_path / "stopped"
    sets = tiny_overrides(synth_mimic, tokenizer_dir, run, **steps)
    proc = start([sys.executable, "-m", "medtrain", "pretrain", *sets], subprocess_env(), tmp_path)
    try:
        wait_for_step(proc, run, 2)
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=600)
    finally:
        end_group(proc)
    assert proc.returncode == 0, err[-3000:]
    line = [x for x in out.splitlines() if "on SIGUSR1" in x]
    assert len(line) == 1, out
    k = int(line[0].split()[3])
    assert line[0] == f"stopping at step {k} on SIGUSR1: checkpoint saved; resume with --resume"
    assert 2 <= k < 6
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step{k}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["step"] == k and "eval" not in summary
    assert not (run / "eval" / "final.json").exists()

    # A crash after logging step k+1 but before its checkpoint: the resumed run drops that line.
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": k + 1, "loss/total": 123.0}) + "\n")
    resumed = run_cli("pretrain", *sets, "--resume")
    assert f"at step {k}" in resumed.stdout

    want, got = losses(straight), losses(run)
    assert [r["step"] for r in got] == list(range(1, 7))  # each step once
    for key in ("loss/total", "loss/contrastive", "loss/mlm", "train/logit_scale"):
        assert [r[key] for r in got] == [r[key] for r in want], key  # exactly, CPU fp32


@pytest.mark.slow
def test_sigstopped_rank_ends_the_job_through_the_watchdog(
    synth_mimic, tokenizer_dir, tmp_path, tiny_overrides, subprocess_env
):
    import psutil

    run = tmp_path / "hung"
    extra = {
        "train.steps": 8,
        "train.zero_stage": 2,
        "train.watchdog_warmup_steps": 2,
        "train.watchdog_factor": 4,
        "train.watchdog_min_s": 8,
        "train.dist_timeout_min": 1,
    }
    sets = tiny_overrides(synth_mimic, tokenizer_dir, run, **FP32, **extra)
    with tempfile.TemporaryDirectory() as tmp:
        port = __import__("socket").socket()
        port.bind(("127.0.0.1", 0))
        master_port = str(port.getsockname()[1])
        port.close()
        deepspeed = str(Path(sys.executable).parent / "deepspeed")
        args = [deepspeed, "--num_gpus", "2", "--master_port", master_port]
        args += ["--module", "medtrain", "pretrain", *sets]
        proc = start(args, subprocess_env({"OMP_NUM_THREADS": "1"}), Path(tmp))
        stopped = None
        try:
            wait_for_step(proc, run, 3)
            ranks = psutil.Process(proc.pid).children(recursive=True)
            stopped = next(p for p in ranks if "--local_rank=1" in p.cmdline())
            stopped.send_signal(signal.SIGSTOP)
            t_stop = time.monotonic()
            dump = run / "hang-rank0.txt"
            while not dump.is_file() and time.monotonic() - t_stop < 120:
                time.sleep(0.1)
            # A really hung rank still receives the launcher's SIGTERM; a stopped one holds it
            # until continued (psutil would wait 30 s, then SIGKILL).
            stopped.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=120)
            elapsed = time.monotonic() - t_stop
        finally:
            if stopped is not None and stopped.is_running():
                stopped.send_signal(signal.SIGCONT)
            end_group(proc)
    assert proc.returncode == 4, err[-3000:]
    assert elapsed < 60  # train.dist_timeout_min
    text = dump.read_text()
    assert text.startswith("medtrain watchdog: rank 0 step ") and "exiting with code 4" in text
    assert "Current thread" in text and "File " in text
    assert "medtrain watchdog: rank 0" in err
