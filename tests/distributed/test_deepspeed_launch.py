"""Real `deepspeed` launches on CPU: 2 ranks ZeRO-2 bf16, checkpoint, resume; multi-node path."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, tiny_overrides

DEEPSPEED = str(Path(sys.executable).parent / "deepspeed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [DEEPSPEED, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def client_state(run: Path, tag: str) -> dict:
    # Our own checkpoint: DeepSpeed pickles Python objects beside the tensors.
    return torch.load(
        run / "checkpoints" / tag / "mp_rank_00_model_states.pt",
        map_location="cpu",
        weights_only=False,
    )


@pytest.mark.slow
def test_two_ranks_zero2_bf16_train_checkpoint_and_resume(synth_mimic, tokenizer_dir, tmp_path):
    run = tmp_path / "run"
    common = [
        "--num_gpus",
        "2",
        "--master_port",
        str(free_port()),
        "--module",
        "medtrain",
        "pretrain",
        "--preset",
        "tiny-cpu",
    ]
    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        run,
        **{
            "train.zero_stage": 2,
            "train.precision": "bf16",
            "train.ckpt_every": 2,
            "train.steps": 4,
        },
    )
    proc = launch(common + sets)
    assert "2 rank(s)" in proc.stdout and "global batch 16" in proc.stdout
    assert (run / "checkpoints" / "latest").read_text().strip() == "step4"
    state = client_state(run, "step4")
    assert state["step"] == 4 and state["world_size"] == 2
    assert state["data"] == {"0": {"epoch": 0, "micro": 4}, "1": {"epoch": 0, "micro": 4}}
    assert (run / "checkpoints" / "step2").is_dir()

    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        run,
        **{"train.zero_stage": 2, "train.ckpt_every": 2, "train.steps": 6},
    )
    common[3] = str(free_port())
    proc = launch(common + sets + ["--resume"])
    assert "at step 4" in proc.stdout
    steps = [
        json.loads(x)["step"]
        for x in (run / "metrics.jsonl").read_text().splitlines()
        if "loss/total" in x
    ]
    assert steps == [1, 2, 3, 4, 5, 6]  # continued, not restarted
    assert client_state(run, "step6")["data"]["1"] == {"epoch": 0, "micro": 6}


@pytest.mark.slow
def test_multinode_no_ssh_path_with_zero3(synth_mimic, tokenizer_dir, tmp_path):
    """Two 'nodes' of one rank each on this host through --hostfile/--no_ssh/--node_rank."""
    run = tmp_path / "mn"
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    port = str(free_port())
    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        run,
        **{"train.zero_stage": 3, "train.steps": 2, "train.grad_accum_steps": 2},
    )
    procs = []
    for node in (0, 1):
        cmd = [
            DEEPSPEED,
            "--hostfile",
            str(hostfile),
            "--no_ssh",
            "--node_rank",
            str(node),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            port,
            "--module",
            "medtrain",
            "pretrain",
            "--preset",
            "tiny-cpu",
            *sets,
        ]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        )
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    assert "2 rank(s)" in outs[0] and "global batch 32" in outs[0]  # 8 x accum 2 x 2 ranks
    assert (run / "checkpoints" / "latest").read_text().strip() == "step2"
