"""Checkpoints of real 2-rank runs (the session's `ckpt_runs`, ZeRO-0/2/3): atomic publishing and
retention, every file through the gate, `latest` fallback, refusing a planted malicious pickle
(eval, resume, universal conversion), and elastic resume ZeRO-2 2 ranks -> 1 (universal)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from medtrain.cli import main as cli_main
from medtrain.train.checkpoint import (
    ALLOWED,
    CheckpointError,
    CheckpointStore,
    check_tag,
    fp32_state_dict,
    verify_tag,
)
from medtrain.train.checkpoint.gate import allowlist

pytestmark = pytest.mark.slow


def ckpts(run: Path) -> Path:
    return run / "checkpoints"


def logged_steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["step"] for x in lines if "loss/total" in x]


def consumed(state: dict) -> int:
    """Samples the shard stream of a saved state has served (every epoch, every shard)."""
    return sum(n for per in state["stream"]["consumed"].values() for n in per.values())


def load_gated(path: Path) -> dict:
    with torch.serialization.safe_globals(allowlist()):
        return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ what the runs wrote


def test_every_tag_complete_gated_and_retained(ckpt_runs):
    seen: set[str] = set()
    for zero, run in ckpt_runs.items():
        root = ckpts(run.path)
        steps = [s for s, _ in CheckpointStore(root, rank=0, world=2).tags()]
        assert [f"step{s}" for s in steps] == list(run.tags), zero  # nothing else, no partials
        assert not list(root.glob(".partial-*"))
        for tag in run.tags:
            assert verify_tag(root / tag) == "", (zero, tag)
            assert check_tag(root / tag) >= 1
            record = json.loads((root / tag / "medtrain" / "complete.json").read_text())
            assert record["world_size"] == 2 and record["tag"] == tag
            assert {"medtrain/rank00000.json", "medtrain/rank00001.json"} <= set(record["files"])
            for pt in (root / tag).rglob("*.pt"):
                seen |= set(torch.serialization.get_unsafe_globals_in_checkpoint(pt))
        assert logged_steps(run.path) == list(range(1, int(run.tags[0][4:]) + 1))
    assert seen == set(ALLOWED)  # each allowlisted class is needed (ZeRO-2: fragment_address)
    assert "2 rank(s)" in ckpt_runs[3].stdout  # two one-rank "nodes" formed one job
    # keep_last 2 of 3 saves: step1 went, after step3 was published
    assert not (ckpts(ckpt_runs[0].path) / "step1").exists()


def test_retention_never_deletes_the_newest_complete_or_the_new_tag(ckpt_runs, copy_run, tmp_path):
    run = copy_run(ckpt_runs[0], tmp_path / "r")
    root = ckpts(run)
    (root / "step3" / "medtrain" / "complete.json").unlink()  # step3 now incomplete
    store = CheckpointStore(root, rank=0, world=2, keep_last=1)
    assert store.retain(keep="step2") == []  # step2: newest complete and the one just written
    assert store.retain(keep="step9") == []  # still the newest complete one
    assert (root / "step3").is_dir()  # incomplete tags are left for inspection
    shutil.copytree(root / "step2", root / "step1")
    assert store.retain(keep="step2") == ["step1"]


# ------------------------------------------------------------------ fallback


def test_latest_falls_back_to_newest_complete_tag(ckpt_runs, copy_run, tmp_path):
    run = copy_run(ckpt_runs[0], tmp_path / "r")
    root = ckpts(run)
    store = CheckpointStore(root, rank=0, world=2)
    assert store.find().tag == "step3" and store.find().notes == []

    def fell_back(expect: str) -> None:
        found = store.find()
        assert found.tag == "step2" and found.step == 2 and found.rank_state is not None
        assert expect in found.notes[0], found.notes
        assert found.notes[1] == "checkpoint: falling back to step2, the newest complete tag"

    model = root / "step3" / "mp_rank_00_model_states.pt"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2])  # torn write
    half = len(good) // 2
    fell_back(
        "`latest` names step3, which is corrupt: mp_rank_00_model_states.pt has "
        f"{half} bytes, the record says {len(good)}"
    )
    model.write_bytes(good[:100] + b"\0" * (len(good) - 200) + good[-100:])  # same size, bad bytes
    fell_back("which is corrupt: refusing checkpoint file")
    model.write_bytes(good)
    (root / "step3" / "medtrain" / "rank00001.json").write_text("{not json")
    fell_back("which is corrupt")
    (root / "step3" / "medtrain" / "complete.json").unlink()
    fell_back("which is incomplete: no completion record medtrain/complete.json")
    (root / "latest").write_text("step9")
    fell_back("`latest` names step9, which is missing")

    (root / "step2" / "mp_rank_00_model_states.pt").unlink()
    with pytest.raises(
        CheckpointError,
        match=r"no usable checkpoint under .*step3: incomplete.*"
        r"step2: incomplete: mp_rank_00_model_states.pt is missing",
    ):
        store.find()
    assert cli_main(["eval", "--run", str(run)]) == 2  # eval: the same choice, the same refusal

    shutil.rmtree(root)
    assert CheckpointStore(root, rank=0, world=2).find() is None  # nothing saved: step 0


# ------------------------------------------------------------------ malicious pickle


class _Evil:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_malicious_pickle_refused_on_eval_resume_and_universal(
    ckpt_runs, copy_run, tmp_path, run_cli, capsys
):
    run = copy_run(ckpt_runs[2], tmp_path / "r")
    marker = tmp_path / "PWNED"
    tag = ckpts(run) / "step4"
    victim = tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    torch.save({"optimizer_state_dict": _Evil(marker)}, victim)
    record = tag / "medtrain" / "complete.json"  # a consistent tamper: the record agrees
    rec = json.loads(record.read_text())
    rec["files"][victim.name] = victim.stat().st_size
    record.write_text(json.dumps(rec))
    want = f"refusing checkpoint file {victim}: it names builtins.exec, not an allowed"

    assert cli_main(["eval", "--run", str(run), "--max-samples", "4"]) == 2
    assert want in capsys.readouterr().err
    assert cli_main(["ckpt", "universal", "--run", str(run)]) == 2
    assert want in capsys.readouterr().err
    assert not (ckpts(run) / "step4_universal").exists()
    proc = run_cli(
        "pretrain",
        "--preset",
        "tiny-cpu",
        *run_sets(ckpt_runs[2], **{"train.out_dir": run}),
        "--resume",
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert want in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (ckpts(run) / "step5").exists()


def run_sets(run, **extra) -> list[str]:
    """The run's --set arguments with out_dir redirected by the caller (last one wins)."""
    args = list(run.sets)
    for k, v in extra.items():
        args += ["--set", f"{k}={v}"]
    return args


# ------------------------------------------------------------------ elastic resume


def partitions_to_params(files: list[Path], key: str) -> dict[str, torch.Tensor]:
    """Rebuild each parameter's flat optimizer state `key` from ZeRO-1/2 rank partitions (rank
    order) through their param_slice_mappings: an independent check of the conversion."""
    pieces: dict[str, list[torch.Tensor]] = {}
    for f in files:
        opt = load_gated(f)["optimizer_state_dict"]
        for group, mapping in enumerate(opt["param_slice_mappings"]):
            flat = opt["base_optimizer_state"]["state"][group][key]
            for name, frag in mapping.items():
                pieces.setdefault(name, []).append(flat[frag.start : frag.start + frag.numel])
    return {name: torch.cat(p) for name, p in pieces.items()}


def test_elastic_zero2_two_ranks_resume_on_one(ckpt_runs, copy_run, tmp_path, run_cli, capsys):
    src = ckpt_runs[2]
    run = copy_run(src, tmp_path / "r")
    root = ckpts(run)
    before = json.loads((root / "step4" / "medtrain" / "state.json").read_text())
    w4 = fp32_state_dict(root, "step4")  # zero_to_fp32 of the two ranks' partitions

    assert cli_main(["ckpt", "universal", "--run", str(run)]) == 0
    assert f"converted {root / 'step4'} -> {root / 'step4_universal'}" in capsys.readouterr().out
    uni = root / "step4_universal" / "zero"
    ranks = sorted((root / "step4").glob("zero_pp_rank_*_optim_states.pt"))
    moments = partitions_to_params(ranks, "exp_avg")
    assert len(moments) == len(w4) > 50
    for name, w in w4.items():
        assert torch.equal(load_gated(uni / name / "fp32.pt")["param"].view(-1), w.view(-1))
        assert torch.equal(load_gated(uni / name / "exp_avg.pt")["param"].view(-1), moments[name])
    assert cli_main(["ckpt", "list", "--run", str(run)]) == 0
    listing = capsys.readouterr().out
    assert "*step4" in listing and "partitioned" in listing and "yes" in listing

    sets = run_sets(src, **{"train.out_dir": run, "train.steps": 5, "train.ckpt_every": 1})
    proc = run_cli("pretrain", "--preset", "tiny-cpu", *sets, "--resume")
    assert f"checkpoint: reusing the universal conversion {root / 'step4_universal'}" in proc.stdout
    assert "at step 4" in proc.stdout and "1 rank(s)" in proc.stdout
    assert logged_steps(run) == [1, 2, 3, 4, 5]  # continued, each step once

    after = json.loads((root / "step5" / "medtrain" / "state.json").read_text())
    assert after["world_size"] == 1 and after["step"] == 5
    assert consumed(after) == consumed(before) + 8  # one micro-batch of 8 on one rank: none skipped
    for epoch, per in before["stream"]["consumed"].items():  # prefixes only grow: none repeated
        assert all(
            after["stream"]["consumed"].get(epoch, {}).get(k, 0) >= n for k, n in per.items()
        )

    # The optimizer state was loaded, not re-initialised: Adam counts 5 steps.
    opt = load_gated(root / "step5" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert int(opt["optimizer_state_dict"]["base_optimizer_state"]["state"][0]["step"]) == 5
    assert_one_adam_step(run, w4, "step5")


def assert_one_adam_step(run: Path, before: dict[str, torch.Tensor], tag: str) -> None:
    """The weights of `tag` are one optimizer step from `before`: no weight moved further than
    Adam's per-step bound (~lr; a model that was not loaded would be O(init scale) away)."""
    after = fp32_state_dict(ckpts(run), tag)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lr = [json.loads(x) for x in lines if '"train/lr"' in x][-1]["train/lr"]
    drift = max((after[k] - before[k]).abs().max().item() for k in before)
    assert 0 < drift <= 5 * lr, (drift, lr)


def test_elastic_zero3_two_nodes_resume_on_one_rank_converts_automatically(
    ckpt_runs, copy_run, tmp_path, run_cli
):
    src = ckpt_runs[3]
    run = copy_run(src, tmp_path / "r")
    root = ckpts(run)
    w2 = fp32_state_dict(root, "step2")
    sets = run_sets(src, **{"train.out_dir": run, "train.steps": 3})
    proc = run_cli("pretrain", "--preset", "tiny-cpu", *sets, "--resume")
    assert (
        "checkpoint: step2 was written by another world size with ZeRO-partitioned optimizer "
        f"state: converted to the universal checkpoint {root / 'step2_universal'}"
    ) in proc.stdout
    assert "at step 2" in proc.stdout and "1 rank(s)" in proc.stdout
    assert logged_steps(run) == [1, 2, 3]
    assert json.loads((root / "step3" / "medtrain" / "state.json").read_text())["world_size"] == 1
    assert_one_adam_step(run, w2, "step3")


# ------------------------------------------------------------------ bf16 files (in-process engines)

BF16_ENGINES = r"""
import sys
import torch, deepspeed
from torch import nn
from medtrain.train.checkpoint.universal import convert
from medtrain.train.engine import init_distributed
init_distributed()
for stage in (2,):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    cfg = {"train_micro_batch_size_per_gpu": 2, "bf16": {"enabled": True},
           "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
           "zero_optimization": {"stage": stage}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
    engine.backward(engine(torch.randn(2, 4, dtype=torch.bfloat16)).float().sum())
    engine.step()
    engine.save_checkpoint(f"{sys.argv[1]}/z{stage}", tag="t", save_latest=False)
    convert(f"{sys.argv[1]}/z{stage}", "t")
"""


def test_bf16_zero2_and_universal_files_pass_the_gate(tmp_path, subprocess_env):
    """bf16 optimizer files (bf16_zero_pp_rank_*) and their universal conversion, from a tiny
    one-rank engine (a bf16 training launch would be ~50x slower on CPUs without bf16). ZeRO-3
    bf16 files name the same classes as fp32 ones (gate.py's table)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", BF16_ENGINES, str(tmp_path)],
        cwd=tmp_path,
        env=subprocess_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen: set[str] = set()
    for stage in (2,):
        for folder in ("t", "t_universal"):
            tag = tmp_path / f"z{stage}" / folder
            assert check_tag(tag) >= (2 if folder == "t" else 4), tag
            for pt in tag.rglob("*.pt"):
                seen |= set(torch.serialization.get_unsafe_globals_in_checkpoint(pt))
        assert list((tmp_path / f"z{stage}" / "t").glob("bf16_zero_pp_rank_0_*optim_states.pt"))
    assert seen == set(ALLOWED)


def test_gate_refuses_code_in_every_pickle_format_and_tells_damage_apart(tmp_path):
    """torch zip, legacy torch.save and bare pickle.dump files naming code are refused as
    foreign (no fallback); damaged archives as corrupt; nothing is ever executed."""
    import pickle

    from medtrain.train.checkpoint import ForeignGlobalError, UnsafeCheckpointError, check_file

    marker = tmp_path / "PWNED"
    torch.save({"x": _Evil(marker)}, tmp_path / "zip.pt")
    torch.save({"x": _Evil(marker)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "raw.pt").write_bytes(pickle.dumps({"x": _Evil(marker)}))
    for name in ("zip", "legacy", "raw"):
        with pytest.raises(ForeignGlobalError, match=rf"{name}.pt: it names (__)?builtin"):
            check_file(tmp_path / f"{name}.pt")
    torch.save({"w": torch.ones(3)}, tmp_path / "good.pt")
    check_file(tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "zeros.pt").write_bytes(bytes(len(good)))
    for name in ("torn", "zeros"):
        with pytest.raises(UnsafeCheckpointError, match="not loadable as weights only") as err:
            check_file(tmp_path / f"{name}.pt")
        assert not isinstance(err.value, ForeignGlobalError)
    assert not marker.exists()
