"""Final evaluation of a fine-tuned model (finetune/evaluate.py): an unreadable eval image is left
out of predictions and references and counted, --max-samples writes beside the full evaluation,
the zero-shot Markdown summary, and a rank-0 evaluation failure reaching every rank."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    """A small synthetic MIMIC-CXR-JPG tree of its own (the tests corrupt an image in it)."""
    from medtrain.synth.config import SynthConfig
    from medtrain.synth.generate import generate

    out = tmp_path_factory.mktemp("small-mimic")
    generate(SynthConfig(layout="mimic-cxr-jpg", n=80, seed=5, image_size=64), out)
    return out


def test_unreadable_eval_image_is_left_out_counted_and_partial_runs_write_beside(
    small_tree, tmp_path, tiny_cfg, vocab_size, caplog
):
    import torch

    from medtrain.config import load_config
    from medtrain.finetune.data import load_split, read_train
    from medtrain.finetune.evaluate import evaluate_split
    from medtrain.finetune.tasks.cls import ClsTask
    from medtrain.models.medvlp import MedVLP

    cfg = load_config("finetune-cls-cpu", [f"data.root={small_tree}", "finetune.bootstrap=10"])
    cfg.model = tiny_cfg()
    task = ClsTask(cfg, None)
    _, train = read_train(cfg, task)
    records, _ = load_split(cfg.data, "test", task.keep)
    assert len(records) >= 4
    bad = records[1]
    bad.image_path.write_bytes(b"not an image at all" * 10)  # garbage bytes, same name
    torch.manual_seed(0)
    model = task.build_model(MedVLP(cfg.model, vocab_size)).eval()
    with caplog.at_level(logging.WARNING, logger="medtrain.finetune.evaluate"):
        result = evaluate_split(task, model, train, records, "test", tmp_path, batch_size=2)
    ev = tmp_path / "eval"
    preds, refs = read_jsonl(ev / "cls-test.pred.jsonl"), read_jsonl(ev / "cls-test.ref.jsonl")
    want = [r.id for r in records if r.id != bad.id]
    assert [p["id"] for p in preds] == want == [r["id"] for r in refs]  # each once, in order
    assert result["n"] == len(records) - 1
    assert result["skipped_unreadable"] == 1 and result["unreadable_ids"] == [bad.id]
    assert json.loads((ev / "cls-test.json").read_text())["skipped_unreadable"] == 1
    assert "left out (unreadable image): 1" in (ev / "cls-test.md").read_text()
    assert bad.id in caplog.text and "left out 1 of" in caplog.text

    # --max-samples N: eval/cls-test-first<N>.*, the full evaluation untouched
    full = (ev / "cls-test.json").read_text()
    part = evaluate_split(task, model, train, records[:3], "test", tmp_path, batch_size=2, first=3)
    assert (ev / "cls-test.json").read_text() == full
    assert json.loads((ev / "cls-test-first3.json").read_text()) == part
    assert part["n"] == 2 and part["unreadable_ids"] == [bad.id]
    assert "first 3 samples only" in (ev / "cls-test-first3.md").read_text()
    assert [p["id"] for p in read_jsonl(ev / "cls-test-first3.pred.jsonl")] == want[:2]


def test_training_dataset_still_substitutes_and_error_policy_raises(small_tree):
    from medtrain.config import load_config
    from medtrain.data.errors import DataError
    from medtrain.finetune.data import TaskDataset, Unreadable, load_split

    cfg = load_config("finetune-cls-cpu", [f"data.root={small_tree}"])
    records, _ = load_split(cfg.data, "validate", lambda r: None)
    records[0].image_path.write_bytes(b"\x00garbage")
    ds = TaskDataset(records, cfg.data, 32, lambda rec, px: {"id": rec.id})
    assert ds[0] == {"id": records[1].id}  # training: the next record's item
    ev = ds.for_evaluation()
    assert ev[0] == Unreadable(records[0].id, ev[0].reason) and ev[1] == {"id": records[1].id}
    cfg.data.on_bad_image = "error"
    with pytest.raises(DataError):
        TaskDataset(records, cfg.data, 32, lambda rec, px: {}).for_evaluation()[0]


def test_zeroshot_markdown_tables_auc_per_finding_macro_and_retrieval():
    from medtrain.finetune.evaluate import zeroshot_markdown

    metrics = {
        "n": 40.0,
        "skipped": 2.0,
        "i2t_R@1": 0.125,
        "t2i_R@10": 0.5,
        "i2t_label_R@5": 0.75,
        "label_R@5/chance": 0.6,
        "auc/macro": 0.8,
        "auc/Edema": 0.9,
        "auc/Pneumonia": 0.7,
    }
    md = zeroshot_markdown("zeroshot on test", metrics)
    assert md == (
        "# zeroshot on test\n\nsamples: 40, skipped: 2\n\n"
        "## Zero-shot classification (AUC-ROC)\n\n"
        "| finding | auc | chance |\n|---|---|---|\n"
        "| Edema | 0.9000 | 0.5000 |\n| Pneumonia | 0.7000 | 0.5000 |\n"
        "| macro | 0.8000 | 0.5000 |\n\n"
        "## Retrieval (recall@K)\n\n"
        "| metric | model | chance |\n|---|---|---|\n"
        "| i2t_R@1 | 0.1250 | 0.0250 |\n| t2i_R@10 | 0.5000 | 0.2500 |\n"
        "| i2t_label_R@5 | 0.7500 | 0.6000 |\n"
    )


# Two gloo ranks; rank 0's evaluation raises. Both must return promptly (no barrier timeout):
# rank 0 with its own exception, rank 1 with its message.
RANK_SCRIPT = """
import json, sys
from datetime import timedelta
from types import SimpleNamespace
import torch
import torch.distributed as dist
import medtrain.finetune.loop as loop

rank, store = int(sys.argv[1]), sys.argv[2]
dist.init_process_group(
    "gloo", init_method="file://" + store, rank=rank, world_size=2, timeout=timedelta(seconds=60)
)

def broken(*a, **k):
    raise ValueError("duplicate id 'x' in predictions")

loop.evaluate_split = broken
me = SimpleNamespace(
    rank=rank, engine=SimpleNamespace(module=None, device=torch.device("cpu")),
    task=None, train_records=[], eval_records=[], out=None, step=3,
    cfg=SimpleNamespace(finetune=SimpleNamespace(eval_split="test"),
                        train=SimpleNamespace(micro_batch_size=2)),
)
result, failed = loop.FinetuneTrainer._final_eval(me)
print(json.dumps({"result": result, "type": type(failed).__name__, "text": str(failed)}))
dist.destroy_process_group()
"""


def test_rank0_evaluation_failure_reaches_every_rank(tmp_path, subprocess_env):
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(RANK_SCRIPT))
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    got = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert got[0] == {
        "result": None,
        "type": "ValueError",
        "text": "duplicate id 'x' in predictions",
    }
    assert got[1] == {
        "result": None,
        "type": "str",
        "text": "ValueError: duplicate id 'x' in predictions",
    }
