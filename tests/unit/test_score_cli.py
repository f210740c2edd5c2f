"""`medtrain score` and score_task: metrics per task, JSON last line, clear errors (exit 2)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtrain.cli import score as score_cli
from medtrain.data.errors import DataError
from medtrain.eval.metrics.score import read_jsonl, score_report, score_task


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _main(argv: list[str]) -> int:
    """The score command parsed and run as medtrain/cli/__init__.py main() does."""
    from medtrain.config import ConfigError

    p = argparse.ArgumentParser(prog="medtrain")
    sub = p.add_subparsers(dest="command", required=True)
    score_cli.add_parser(sub)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"medtrain: error: {e}", file=sys.stderr)
        return 2
    return 0


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, argparse; from medtrain.cli import score as s; p = argparse.ArgumentParser();"
        "s.add_parser(p.add_subparsers()); heavy = {'torch', 'sklearn', 'pycocoevalcap', 'numpy'}"
        " & set(sys.modules); assert not heavy, heavy"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_cls_json_last_line(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    t = (rng.random(30) < 0.4).astype(int)
    s = t * 0.5 + rng.random(30)
    preds = [{"id": i, "scores": {"Pneumonia": float(s[i]), "Edema": 0.5}} for i in range(30)]
    refs = [{"id": i, "labels": {"Pneumonia": int(t[i]), "Edema": 1}} for i in range(30)]
    refs[3]["labels"]["Pneumonia"] = None  # blank: left out
    argv = ["score", "--task", "cls", "--json", "--bootstrap", "50"]
    argv += [
        "--pred",
        _write(tmp_path / "p.jsonl", preds),
        "--ref",
        _write(tmp_path / "r.jsonl", refs),
    ]
    assert _main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    m = json.loads(out[-1])
    keep = np.arange(30) != 3
    assert m["auc/Pneumonia"] == pytest.approx(roc_auc_score(t[keep], s[keep]))
    assert m["auc/macro"] == m["auc/Pneumonia"]
    assert m["auc/macro/ci_low"] <= m["auc/macro"] <= m["auc/macro/ci_high"]
    assert any("Edema" in line and "one class" in line for line in out)


def test_report_and_vqa(tmp_path) -> None:
    preds = [{"id": "a", "text": "Small left effusion."}, {"id": "b", "text": "Lungs are clear."}]
    refs = [
        {"id": "a", "text": "Small left pleural effusion.", "labels": {"Pleural Effusion": 1}},
        {"id": "b", "text": "The lungs are clear.", "labels": {"No Finding": 1}},
    ]
    r = score_report("report", preds, refs)
    assert set(r.metrics) >= {"bleu1", "bleu4", "rougeL", "cider", "ce/precision", "ce/f1"}
    assert r.metrics["ce/f1"] == 1.0 and r.metrics["ce_ref_labels/f1"] == 1.0
    assert any("ce_ref_labels" in n and "2/2 references" in n for n in r.notes)
    # findings positive on neither side: no per-finding key, named in a note
    assert {k for k in r.metrics if k.count("/") == 2} == {
        "ce/Pleural Effusion/f1",
        "ce/No Finding/f1",
    }
    assert any("left out" in n and "Fracture" in n for n in r.notes)
    # ce/* reads the reference TEXT; dataset labels that disagree with it move ce_ref_labels only
    refs[0]["labels"] = {"Pneumothorax": 1}
    r = score_report("report", preds, refs)
    assert r.metrics["ce/f1"] == 1.0 and r.metrics["ce/Pleural Effusion/f1"] == 1.0
    assert r.metrics["ce_ref_labels/precision"] == pytest.approx(1 / 2)  # PE a fp, NF b tp
    assert r.metrics["ce_ref_labels/recall"] == pytest.approx(1 / 2)  # PTX a fn
    del refs[0]["labels"]
    r = score_report("report", preds, refs)
    assert r.metrics["ce_ref_labels/f1"] == 1.0  # over the one reference with labels
    assert any("1/2 references" in n for n in r.notes)
    del refs[1]["labels"]
    r = score_report("report", preds, refs)
    assert r.metrics["ce/f1"] == 1.0 and not any(k.startswith("ce_ref") for k in r.metrics)
    assert "labeler on the generated and on the reference text" in r.notes[0]
    m = score_task(
        "vqa",
        [{"id": 1, "answer": "Yes"}, {"id": 2, "answer": "two"}],
        [
            {"id": 1, "question": "q", "answer": "yes", "answer_type": "CLOSED"},
            {"id": 2, "question": "q", "answers": ["2", "3"], "answer_type": "OPEN"},
        ],
    )
    assert m["accuracy/overall"] == 1.0 and m["vqa_score"] == pytest.approx((1 + 1 / 3) / 2)


def test_errors(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "answer": "x"}\n\n{"id": 2, "answer": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:3"):
        read_jsonl(bad)
    ref = _write(tmp_path / "r.jsonl", [{"id": i, "answer": "x"} for i in range(8)])
    pred = _write(tmp_path / "p.jsonl", [{"id": i, "answer": "x"} for i in range(2, 9)])
    assert _main(["score", "--task", "vqa", "--pred", pred, "--ref", ref]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 references without a prediction (first ['0', '1'])" in err[0]
    assert "1 predictions without a reference (first ['8'])" in err[0]
    with pytest.raises(DataError, match="unknown task 'seg'; tasks: report, cls, vqa"):
        score_task("seg", [], [])
    with pytest.raises(DataError, match=r"label value 2 not in"):
        score_task("cls", [{"id": 1, "scores": {"A": 0.1}}], [{"id": 1, "labels": {"A": 2}}])
    assert _main(["score", "--task", "vqa", "--pred", str(tmp_path / "nope"), "--ref", ref]) == 2
    with pytest.raises(SystemExit):
        _main(["score", "--task", "seg", "--pred", pred, "--ref", ref])
