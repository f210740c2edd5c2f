"""End-to-end fine-tuning, single process, in-process (medtrain.finetune.loop.finetune): a tiny
pretraining run (2 steps) -> cls and vqa fine-tuning writing every run-directory file; the eval
files re-score to the same metrics; --resume continues; bad input is a clear error.

Everything is written under tmp_path (the checkout's runs/ and data/ are never touched)."""

from __future__ import annotations

import argparse
import json

import pytest

TINY_MODEL = {
    "model.embed_dim": 24,
    "model.vision.img_size": 64,
    "model.vision.embed_dim": 16,
    "model.vision.depths": "[1,1]",
    "model.vision.num_heads": "[2,2]",
    "model.vision.window_size": 4,
    "model.text.hidden_size": 32,
    "model.text.num_layers": 1,
    "model.text.num_heads": 2,
    "model.text.intermediate_size": 64,
    "model.text.max_length": 32,
    "model.fusion.num_layers": 1,
    "model.fusion.num_heads": 2,
}


def sets(values: dict) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def pretrain_run(synth_mimic, tokenizer_dir, tmp_path_factory):
    """A 2-step tiny pretraining run (ZeRO-2, fp32) to fine-tune from."""
    from medtrain.config import load_config
    from medtrain.train.loop import pretrain

    out = tmp_path_factory.mktemp("pretrain-run")
    cfg = load_config(
        "tiny-cpu",
        sets(
            TINY_MODEL
            | {
                "data.root": synth_mimic,
                "tokenizer.path": tokenizer_dir,
                "train.out_dir": out,
                "data.num_workers": 0,
                "data.max_eval_samples": 8,
                "train.micro_batch_size": 8,
                "train.steps": 2,
                "train.eval_every": 0,
                "train.ckpt_every": 0,
                "train.precision": "fp32",
            }
        ),
    )
    pretrain(cfg)
    return out


def finetune_cfg(task: str, init, out, data_root, **extra):
    from medtrain.config import load_config

    values = {
        "finetune.init": init,
        "data.root": data_root,
        "train.out_dir": out,
        "train.steps": 4,
        "train.micro_batch_size": 8,
        "train.precision": "fp32",
        "train.log_every": 1,
        "finetune.bootstrap": 20,
    } | extra
    return load_config(f"finetune-{task}-cpu", sets(values))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cls_writes_run_files_rescoring_matches_and_resume_continues(
    pretrain_run, synth_mimic, tmp_path
):
    from medtrain.eval.metrics.score import score_task
    from medtrain.finetune.loop import finetune

    out = tmp_path / "cls"
    summary = finetune(
        finetune_cfg("cls", pretrain_run, out, synth_mimic, **{"train.ckpt_every": 2})
    )
    assert summary["status"] == "completed" and summary["step"] == 4
    for name in ("config.yaml", "task.json", "summary.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "checkpoints" / "latest").read_text().strip() == "step4"
    ev = out / "eval"
    result = json.loads((ev / "cls-test.json").read_text())
    preds, refs = read_jsonl(ev / "cls-test.pred.jsonl"), read_jsonl(ev / "cls-test.ref.jsonl")
    assert len(preds) == len(refs) == result["n"] > 0
    labels = json.loads((out / "task.json").read_text())["labels"]
    assert labels and set(preds[0]["scores"]) == set(labels)
    rescored = score_task("cls", preds, refs, bootstrap=20)
    assert rescored == pytest.approx(result["metrics"], nan_ok=True)
    assert result["baseline"]["auc/macro"] == pytest.approx(0.5)  # a constant ranks nothing
    assert "| auc/macro |" in (ev / "cls-test.md").read_text()
    assert (ev / "cls-test.roc.png").stat().st_size > 0
    # The architecture is the init run's, not the preset's.
    from medtrain.config import load_config

    assert load_config(str(out / "config.yaml")).model.vision.img_size == 64

    # A run directory with checkpoints is not overwritten without --resume.
    from medtrain.config import ConfigError

    with pytest.raises(ConfigError, match="pass --resume"):
        finetune(finetune_cfg("cls", pretrain_run, out, synth_mimic))
    # --resume to more steps continues from step 4 (the log restarts after it).
    summary = finetune(
        finetune_cfg("cls", pretrain_run, out, synth_mimic, **{"train.steps": 6}), resume=True
    )
    assert summary["step"] == 6
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "loss/total" in r]
    assert steps == [1, 2, 3, 4, 5, 6]

    # `medtrain eval --task cls --run DIR` rewrites the same files through the gate.
    from medtrain.cli import evaluate as cli_evaluate

    final = json.loads((ev / "cls-test.json").read_text())
    (ev / "cls-test.json").unlink()
    parser = argparse.ArgumentParser(prog="medtrain")
    cli_evaluate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--task", "cls", "--run", str(out), "--device", "cpu"])
    args.fn(args)
    again = json.loads((ev / "cls-test.json").read_text())
    assert again["metrics"] == pytest.approx(final["metrics"], nan_ok=True)
    args = parser.parse_args(["eval", "--task", "vqa", "--run", str(out), "--device", "cpu"])
    with pytest.raises(ConfigError, match="fine-tuning run of task 'cls', not 'vqa'"):
        args.fn(args)


def test_random_init_and_linear_probe_build_and_train(pretrain_run, synth_mimic, tmp_path):
    import torch

    from medtrain.finetune.backbone import load_backbone
    from medtrain.finetune.loop import finetune

    cfg = finetune_cfg("cls", pretrain_run, tmp_path / "a", synth_mimic)
    pre, _, _ = load_backbone(cfg)
    cfg = finetune_cfg(
        "cls", pretrain_run, tmp_path / "b", synth_mimic, **{"finetune.init_weights": "random"}
    )
    rnd1, _, _ = load_backbone(cfg)
    rnd2, _, _ = load_backbone(cfg)
    sd_pre, sd1, sd2 = pre.state_dict(), rnd1.state_dict(), rnd2.state_dict()
    key = next(k for k in sd1 if k.startswith("vision.") and sd1[k].ndim > 1)
    assert torch.equal(sd1[key], sd2[key])  # seeded: every arm starts from the same weights
    assert not torch.equal(sd_pre[key], sd1[key])

    out = tmp_path / "probe"
    summary = finetune(
        finetune_cfg(
            "cls",
            pretrain_run,
            out,
            synth_mimic,
            **{"finetune.mode": "linear", "finetune.label_fraction": 0.1, "train.steps": 2},
        )
    )
    assert summary["status"] == "completed"
    assert 0 < summary["n_train"] < 240


def test_bad_input_is_a_clear_error(synth_mimic, tmp_path, capsys):
    from medtrain.cli import finetune as cli_finetune
    from medtrain.config import ConfigError
    from medtrain.finetune.backbone import load_backbone

    cfg = finetune_cfg("cls", "", tmp_path / "x", synth_mimic)
    with pytest.raises(ConfigError, match="finetune.init is empty"):
        load_backbone(cfg)
    cfg = finetune_cfg("cls", tmp_path, tmp_path / "x", synth_mimic)
    with pytest.raises(ConfigError, match="not a pretraining run directory"):
        load_backbone(cfg)

    parser = argparse.ArgumentParser(prog="medtrain")
    cli_finetune.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["finetune", "detect", "--init", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'detect'" in err and all(t in err for t in ("cls", "vqa", "report"))


@pytest.fixture(scope="module")
def synth_vqa_rad(tmp_path_factory):
    from medtrain.synth.config import SynthConfig
    from medtrain.synth.generate import generate

    out = tmp_path_factory.mktemp("synth-vqa-rad")
    generate(SynthConfig(layout="vqa-rad", n=60, seed=3, image_size=64), out)
    return out


def test_vqa_through_the_cli_writes_eval_files_that_rescore_to_the_metrics(
    pretrain_run, synth_vqa_rad, tmp_path, capsys
):
    """Last in this module: the command ends by destroying the process group."""
    from medtrain.cli import finetune as cli_finetune
    from medtrain.eval.metrics.score import score_task

    out = tmp_path / "vqa"
    parser = argparse.ArgumentParser(prog="medtrain")
    cli_finetune.add_parser(parser.add_subparsers(dest="command"))
    argv = ["finetune", "vqa", "--init", str(pretrain_run)]
    for item in sets(
        {
            "data.root": synth_vqa_rad,
            "train.out_dir": out,
            "train.steps": 4,
            "train.micro_batch_size": 8,
            "train.precision": "fp32",
            "finetune.bootstrap": 20,
        }
    ):
        argv += ["--set", item]
    args = parser.parse_args([*argv, "--print-config"])
    args.fn(args)
    printed = capsys.readouterr().out
    assert "task: vqa" in printed and f"init: {pretrain_run}" in printed
    assert not out.exists()
    args = parser.parse_args(argv)
    args.fn(args)
    assert "done: vqa, 4 steps" in capsys.readouterr().out
    result = json.loads((out / "eval" / "vqa-test.json").read_text())
    preds = read_jsonl(out / "eval" / "vqa-test.pred.jsonl")
    refs = read_jsonl(out / "eval" / "vqa-test.ref.jsonl")
    assert len(preds) == len(refs) == result["n"] > 0
    answers = json.loads((out / "task.json").read_text())["answers"]
    assert {"yes", "no"} <= set(answers) and all(p["answer"] in answers for p in preds)
    assert {r["answer_type"] for r in refs} <= {"CLOSED", "OPEN"} and refs[0]["question"]
    assert score_task("vqa", preds, refs) == pytest.approx(result["metrics"], nan_ok=True)
    assert 0.0 <= result["baseline"]["accuracy/overall"] <= 1.0
