"""Fine-tuning under a real 2-rank `deepspeed` launch (CPU ranks), ZeRO-2 bf16: one launch of
finetune_tasks.py trains each task (cls on MIMIC-CXR-JPG, vqa on VQA-RAD, report on MIMIC-CXR-JPG)
2 steps with a checkpoint per step, then resumes it in the same process to step 4. The init run
is the session's ZeRO-0 pretraining run (`ckpt_runs[0]`, read-only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from medtrain.train.checkpoint.gate import allowlist

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("finetune_tasks.py")
STEPS, MORE = 2, 2
KEYS = {  # metrics each task's eval file must hold
    "cls": {"auc/macro", "auc/macro/ci_low", "auc/macro/ci_high"},
    "vqa": {"accuracy/closed", "accuracy/open", "accuracy/overall", "vqa_score"},
    "report": {"bleu1", "bleu2", "bleu3", "bleu4", "rougeL", "cider", "ce/precision", "ce/f1"},
}


@pytest.fixture(scope="module")
def synth_vqa(tmp_path_factory) -> Path:
    """A tiny synthetic VQA-RAD tree (JSON list + image folder)."""
    from medtrain.synth.config import SynthConfig
    from medtrain.synth.generate import generate

    out = tmp_path_factory.mktemp("synth-vqa-rad")
    generate(SynthConfig(layout="vqa-rad", n=40, seed=5, image_size=128), out)
    return out


@pytest.fixture(scope="module")
def launched(ckpt_runs, synth_mimic, synth_vqa, launch, free_port, tmp_path_factory):
    """(out dir holding cls/ vqa/ report/, {rank: results}, launcher stdout) of one launch."""
    out = tmp_path_factory.mktemp("finetune-launch")
    result = out / "result"
    proc = launch(
        ["--num_gpus", "2", "--master_port", str(free_port()), str(SCRIPT)]
        + ["--init", str(ckpt_runs[0].path), "--mimic", str(synth_mimic), "--vqa", str(synth_vqa)]
        + ["--out", str(out), "--result", str(result), "--steps", str(STEPS)]
        + ["--more", str(MORE)],
        timeout=600,
    )
    ranks = {r: json.loads(Path(f"{result}-rank{r}.json").read_text()) for r in (0, 1)}
    return out, ranks, proc.stdout + proc.stderr


def loss_steps(run: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(x["step"], x["loss/total"]) for x in lines if "loss/total" in x]


def load_gated(path: Path) -> dict:
    with torch.serialization.safe_globals(allowlist()):
        return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("task", list(KEYS))
def test_each_task_trains_zero2_bf16_and_resumes(launched, ckpt_runs, task):
    out, ranks, stdout = launched
    run, end = out / task, STEPS + MORE
    ckpts = run / "checkpoints"

    # Both ranks ran both calls; the second continued the first's checkpoint to the new end.
    for rank, results in ranks.items():
        got = results[task]
        assert (got["rank"], got["world"]) == (rank, 2)
        assert got["first"]["status"] == got["resumed"]["status"] == "completed"
        assert (got["first"]["step"], got["resumed"]["step"]) == (STEPS, end)
    assert f"resumed from {ckpts / f'step{STEPS}'} at step {STEPS}" in stdout
    assert f"medtrain finetune {task}: 2 rank(s)" in stdout
    # Every step logged once (a restart from 0 would log 1, 2 again), every loss finite.
    logged = loss_steps(run)
    assert [s for s, _ in logged] == list(range(1, end + 1)), logged
    assert all(math.isfinite(v) for _, v in logged), logged
    assert json.loads((run / "summary.json").read_text())["step"] == end

    # Checkpoints: keep_last 2 of one per step, the newest the run's end, saved by 2 ranks.
    assert (ckpts / "latest").read_text().strip() == f"step{end}"
    assert sorted(p.name for p in ckpts.glob("step*")) == [f"step{end - 1}", f"step{end}"]
    state = json.loads((ckpts / f"step{end}" / "medtrain" / "state.json").read_text())
    assert (state["step"], state["world_size"]) == (end, 2)

    # bf16 under ZeRO-2: the config says so, the saved module weights are bf16, and each rank's
    # optimizer file (DeepSpeed's bf16_ prefix) holds its half of the fp32 master weights.
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["train"]["precision"], config["train"]["zero_stage"]) == ("bf16", 2)
    init_model = yaml.safe_load((ckpt_runs[0].path / "config.yaml").read_text())["model"]
    assert config["model"] == init_model  # the architecture is the init run's
    model = load_gated(ckpts / f"step{end}" / "mp_rank_00_model_states.pt")
    assert model["global_steps"] == end and model["dp_world_size"] == 2
    dtypes = {t.dtype for t in model["module"].values() if t.is_floating_point()}
    assert dtypes == {torch.bfloat16}, dtypes
    for rank in (0, 1):
        name = f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
        optim = load_gated(ckpts / f"step{end}" / name)["optimizer_state_dict"]
        assert optim["zero_stage"] == 2 and set(optim["partition_count"]) == {2}
        assert {t.dtype for t in optim["single_partition_of_fp32_groups"]} == {torch.float32}

    # The final evaluation (rank 0): every file, the task's metrics, as rank 0 returned them.
    ev = run / "eval"
    for suffix in (".json", ".md", ".pred.jsonl", ".ref.jsonl"):
        assert (ev / f"{task}-test{suffix}").is_file(), suffix
    result = json.loads((ev / f"{task}-test.json").read_text())
    assert result["n"] > 0 and result["split"] == "test"
    assert KEYS[task] <= set(result["metrics"]), sorted(result["metrics"])
    assert result["metrics"] == pytest.approx(
        ranks[0][task]["resumed"]["eval"]["metrics"], nan_ok=True
    )
    assert "eval" not in ranks[1][task]["resumed"]
    n_pred = len((ev / f"{task}-test.pred.jsonl").read_text().splitlines())
    assert n_pred == result["n"]
