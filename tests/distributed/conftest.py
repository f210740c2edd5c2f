"""Fixtures shared by the distributed tests (test_deepspeed_launch.py, test_checkpoints.py,
test_stream_resume.py): `deepspeed` launches on CPU ranks, free TCP ports, the client state of a
saved checkpoint, and `ckpt_runs`: finished 2-rank fp32 runs with checkpoints of ZeRO-0/2/3.

`ckpt_runs` (session-scoped, built once, ~3 launches) is meant to be shared by every test that
needs real checkpoints: resume, fallback, retention, safe loading, elastic resume, and exporting
weights. Its run directories are READ-ONLY for tests: copy one first (`copy_run`) before
resuming, corrupting or planting files in it.

    ckpt_runs[0]  ZeRO-0, launched by `launchers/local.sh 2 -- ...`: 3 steps, ckpt_every 1,
                  keep_last 2 -> tags step2, step3 (step1 deleted by retention)
    ckpt_runs[2]  ZeRO-2, plain `deepspeed --num_gpus 2`, data.format=shards: 4 steps,
                  ckpt_every 2 -> tags step2, step4
    ckpt_runs[3]  ZeRO-3, `launchers/multinode_nossh.sh` run twice (two "nodes" of one rank on
                  127.0.0.1): 2 steps, ckpt_every 1 -> tags step1, step2
Each is a CkptRun: .path (run dir: config.yaml, tokenizer/, checkpoints/, metrics.jsonl),
.zero, .tags (newest first), .sets (its --set arguments: add --resume and more to continue
it), .stdout (of rank 0's launcher).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

DEEPSPEED = str(Path(sys.executable).parent / "deepspeed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client_state(run: Path, tag: str) -> dict:
    """The run-wide state medtrain saved with checkpoint `tag` of run directory `run` (JSON)."""
    import json

    return json.loads((run / "checkpoints" / tag / "medtrain" / "state.json").read_text())


@pytest.fixture(scope="session")
def deepspeed_bin() -> str:
    """Path of the `deepspeed` launcher of this interpreter's environment."""
    return DEEPSPEED


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """free_port() -> a TCP port on 127.0.0.1 that is free right now."""
    return _free_port


@pytest.fixture(scope="session")
def launch(subprocess_env) -> Callable[..., subprocess.CompletedProcess]:
    """launch(args, timeout=900, cwd=None) -> CompletedProcess of `deepspeed ARGS`, checked."""

    def _launch(
        args: list[str], timeout: int = 900, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """`deepspeed ARGS` (ranks are CPU processes), checked; in `cwd`, by default a fresh
        temporary directory (as run_cli)."""
        with tempfile.TemporaryDirectory(prefix="medtrain-cwd-") as tmp:
            proc = subprocess.run(
                [DEEPSPEED, *args],
                cwd=cwd or tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=subprocess_env({"OMP_NUM_THREADS": "1"}),
            )
        assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc

    return _launch


@pytest.fixture(scope="session")
def client_state() -> Callable[[Path, str], dict]:
    """client_state(run, tag) -> the client state medtrain saved with checkpoint `tag` of `run`."""
    return _client_state


# ------------------------------------------------------------ shared checkpoint runs


@dataclass(frozen=True)
class CkptRun:
    """One finished 2-rank run of `ckpt_runs` (read-only: copy_run before changing it)."""

    path: Path
    zero: int
    tags: tuple[str, ...]  # newest first
    sets: tuple[str, ...]  # the --set arguments it was launched with
    stdout: str


def _copy_run(run: CkptRun, dest: Path) -> Path:
    """A private copy of `run`'s directory at dest (-> dest), safe to resume or corrupt."""
    shutil.copytree(run.path, dest, symlinks=True)
    return dest


def _run_script(cmd: list[str], env: dict, cwd: Path, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def ckpt_runs(
    synth_mimic, tokenizer_dir, tiny_overrides, subprocess_env, repo_root, tmp_path_factory
) -> dict[int, CkptRun]:
    """{0, 2, 3} -> CkptRun: 2-rank fp32 runs with >= 2 checkpoint tags each (module docstring).
    Built once per session through the launchers users run (local.sh, multinode_nossh.sh) and
    plain `deepspeed`."""
    from medtrain.data.config import ShardConfig
    from medtrain.data.shards.write import prepare_shards

    base = tmp_path_factory.mktemp("ckpt-runs")
    env = subprocess_env({"OMP_NUM_THREADS": "1", "DEEPSPEED": DEEPSPEED})
    common = {
        "train.precision": "fp32",
        "train.eval_every": 0,
        "data.max_eval_samples": 16,
    }
    runs: dict[int, CkptRun] = {}

    # ZeRO-0 through launchers/local.sh (N ranks, `--`, then pretrain arguments).
    path = base / "zero0"
    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        path,
        **common,
        **{"train.zero_stage": 0, "train.steps": 3, "train.ckpt_every": 1, "train.keep_last": 2},
    )
    out = _run_script(
        ["bash", str(repo_root / "launchers" / "local.sh"), "2", "--", "--preset", "tiny-cpu"]
        + sets,
        {**env, "MASTER_PORT": str(_free_port())},
        base,
    )
    runs[0] = CkptRun(path, 0, ("step3", "step2"), tuple(sets), out)

    # ZeRO-2 through plain deepspeed, streaming shards (the elastic test checks the stream).
    shards = base / "shards"
    prepare_shards(
        source="mimic-cxr-jpg",
        root=synth_mimic,
        out=shards,
        split="train",
        cfg=ShardConfig(shard_size=16, image_size=128),
    )
    path = base / "zero2"
    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        path,
        **common,
        **{
            "train.zero_stage": 2,
            "train.steps": 4,
            "train.ckpt_every": 2,
            "data.format": "shards",
            "data.shards": shards,
        },
    )
    cmd = [DEEPSPEED, "--num_gpus", "2", "--master_port", str(_free_port())]
    out = _run_script(
        cmd + ["--module", "medtrain", "pretrain", "--preset", "tiny-cpu"] + sets, env, base
    )
    runs[2] = CkptRun(path, 2, ("step4", "step2"), tuple(sets), out)

    # ZeRO-3 through launchers/multinode_nossh.sh: two "nodes" of one rank each on loopback.
    path = base / "zero3"
    hostfile = base / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        path,
        **common,
        **{"train.zero_stage": 3, "train.steps": 2, "train.ckpt_every": 1},
    )
    node_env = {**env, "HOSTFILE": str(hostfile), "MASTER_ADDR": "127.0.0.1"}
    node_env["MASTER_PORT"] = str(_free_port())
    script = str(repo_root / "launchers" / "multinode_nossh.sh")
    procs = [
        subprocess.Popen(
            ["bash", script, "--preset", "tiny-cpu", *sets],
            cwd=base,
            env={**node_env, "NODE_RANK": str(node)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    runs[3] = CkptRun(path, 3, ("step2", "step1"), tuple(sets), outs[0])
    for run in runs.values():
        assert (run.path / "checkpoints" / "latest").read_text().strip() == run.tags[0]
    return runs


@pytest.fixture(scope="session")
def copy_run() -> Callable[[CkptRun, Path], Path]:
    """copy_run(run, dest) -> dest: a private, mutable copy of a `ckpt_runs` run directory."""
    return _copy_run
