"""End-to-end: the `medtrain` CLI on fixture data, single process (DeepSpeed, 1 rank).

run_cli runs each command in a fresh temporary working directory and every run gets its own
train.out_dir under tmp_path: nothing here reads or writes the checkout's runs/ or data/."""

import json

import pytest


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_pretrain_learns_writes_logs_checkpoint_and_evaluates(
    synth_mimic, tokenizer_dir, tmp_path, run_cli, tiny_overrides
):
    run = tmp_path / "run"
    sets = tiny_overrides(synth_mimic, tokenizer_dir, run, **{"train.steps": 60, "train.lr": 1e-3})
    proc = run_cli("pretrain", "--preset", "tiny-cpu", *sets)
    assert "held-out zero-shot AUC" in proc.stdout and "checkpoints:" in proc.stdout
    rows = [r for r in read_metrics(run) if "loss/total" in r]
    assert [r["step"] for r in rows] == list(range(1, 61))
    first = sum(r["loss/total"] for r in rows[:5]) / 5
    last = sum(r["loss/total"] for r in rows[-5:]) / 5
    assert last < first - 1.0, (first, last)  # it learns, not just runs
    assert rows[-1]["loss/mlm"] < rows[0]["loss/mlm"]
    assert rows[-1]["perf/tflops_per_rank"] > 0  # model FLOPs counted on the first micro-batch
    for key in (
        "loss/contrastive",
        "train/lr",
        "train/grad_norm",
        "train/logit_scale",
        "perf/samples_per_s",
    ):
        assert key in rows[-1]
    # Linear warmup over the first 10% (6 steps); the lr logged after step k is the one for k+1.
    assert rows[0]["train/lr"] == pytest.approx(1e-3 * 2 / 6)
    assert rows[4]["train/lr"] == pytest.approx(1e-3)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step60"
    assert list((run / "tb").glob("events.out.tfevents.*"))
    final = json.loads((run / "eval" / "final.json").read_text())
    assert {"i2t_R@1", "t2i_R@10", "auc/macro"} <= set(final)

    again = run_cli("pretrain", "--preset", "tiny-cpu", *sets, check=False, timeout=300)
    assert again.returncode == 2 and "pass --resume" in again.stderr  # never overwrites a run

    ev = run_cli("eval", "--run", str(run), "--split", "test")
    metrics = json.loads((run / "eval" / "zeroshot-test.json").read_text())
    assert metrics["n"] > 0 and 0 <= metrics["t2i_R@5"] <= 1 and "auc/macro" in metrics
    assert "written to" in ev.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "tiny-gpu"], "valid presets: ['base-h100', 'tiny-cpu']"),
        (["--set", "train.learning_rate=1"], "valid keys under train"),
        (["--set", "model.fusion.name=film"], "valid: ['coattn', 'cross', 'merged', 'none']"),
        (["--set", "data.root=/nonexistent/mimic"], "data root /nonexistent/mimic does not exist"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    args, message, synth_mimic, tokenizer_dir, tmp_path, run_cli
):
    base = [
        "--set",
        f"tokenizer.path={tokenizer_dir}",
        "--set",
        f"data.root={synth_mimic}",
        "--set",
        f"train.out_dir={tmp_path / 'run'}",
    ]
    proc = run_cli("pretrain", *base, *args, check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_tokenizer_is_a_clear_error(synth_mimic, tmp_path, run_cli):
    proc = run_cli(
        "pretrain",
        "--set",
        f"data.root={synth_mimic}",
        "--set",
        f"tokenizer.path={tmp_path / 'no-tok'}",
        "--set",
        f"train.out_dir={tmp_path / 'run'}",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2 and "no-tok" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_base_h100_preset_builds_and_runs_one_step_on_cpu(
    synth_mimic, tokenizer_dir, tmp_path, run_cli
):
    run = tmp_path / "base"
    sets = [
        "--set",
        f"data.root={synth_mimic}",
        "--set",
        f"tokenizer.path={tokenizer_dir}",
        "--set",
        f"train.out_dir={run}",
        "--set",
        "train.steps=1",
        "--set",
        "train.micro_batch_size=2",
        "--set",
        "train.global_batch_size=2",
        "--set",
        "train.ds_config=ds_configs/cpu.json",  # from the package (no ds_configs/ in the cwd)
        "--set",
        "data.num_workers=0",
        "--set",
        "data.max_eval_samples=2",
        "--set",
        "eval.batch_size=2",
        "--set",  # bf16 on CPUs with native bf16 only (emulated it takes minutes here)
        "train.precision=auto",
    ]
    proc = run_cli("pretrain", "--preset", "base-h100", *sets, timeout=900)
    assert "1 steps" in proc.stdout
    assert (run / "checkpoints" / "latest").read_text().strip() == "step1"
    header = next(line for line in proc.stdout.splitlines() if "medtrain pretrain:" in line)
    params = float(header.split("pairs, ")[1].split("M params")[0])
    assert params > 150  # Swin-B + BERT-base + 6 fusion layers, really built
