"""Real `deepspeed` launches on CPU: 2 ranks ZeRO-2 bf16, checkpoint, resume; multi-node path."""

import json
import subprocess

import pytest


@pytest.mark.slow
def test_two_ranks_zero2_bf16_train_checkpoint_and_resume(
    synth_mimic, tokenizer_dir, tmp_path, tiny_overrides, launch, free_port, client_state
):
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
    proc = launch(common + sets, cwd=tmp_path)
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
    )  # train.precision left at the preset's "auto": resuming keeps the run's bf16
    common[3] = str(free_port())
    proc = launch(common + sets + ["--resume"], cwd=tmp_path)
    assert "at step 4" in proc.stdout
    assert "train.precision=auto -> bf16 (as the run being resumed)" in proc.stdout
    steps = [
        json.loads(x)["step"]
        for x in (run / "metrics.jsonl").read_text().splitlines()
        if "loss/total" in x
    ]
    assert steps == [1, 2, 3, 4, 5, 6]  # continued, not restarted
    assert client_state(run, "step6")["data"]["1"] == {"epoch": 0, "micro": 6}


@pytest.mark.slow
def test_multinode_no_ssh_path_with_zero3(
    synth_mimic, tokenizer_dir, tmp_path, tiny_overrides, free_port, subprocess_env, deepspeed_bin
):
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
            deepspeed_bin,
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
                cwd=tmp_path,  # never the checkout (its runs/, data/)
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=subprocess_env({"OMP_NUM_THREADS": "1"}),
            )
        )
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    assert "2 rank(s)" in outs[0] and "global batch 32" in outs[0]  # 8 x accum 2 x 2 ranks
    assert (run / "checkpoints" / "latest").read_text().strip() == "step2"
