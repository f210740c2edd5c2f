"""`medtrain data preview`: what training sees, from records and from shards, de-identified."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medtrain.cli import main
from medtrain.data.config import ShardConfig
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.pipeline import build_pipeline
from medtrain.data.preview import preview_config
from medtrain.data.shards.write import prepare_shards
from medtrain.data.sources import open_source, source_options
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate

REPO = Path(__file__).resolve().parents[2]
SOURCE = "mimic-cxr-jpg"


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic MIMIC layout where every report carries injected PHI, and its train shards."""
    root = tmp_path_factory.mktemp("preview") / "mimic"
    generate(SynthConfig(layout=SOURCE, n=30, seed=11, image_size=96, phi_fraction=1.0), root)
    cfg = preview_config(source=SOURCE, root=str(root)).data
    shards = root.parent / "shards"
    prepare_shards(
        source=SOURCE,
        root=root,
        out=shards,
        split="train",
        cfg=ShardConfig(shard_size=8, image_size=128),
        **source_options(cfg),
    )
    return root, shards


def preview(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["data", "preview", "--source", SOURCE, *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def injected_phi(root: Path) -> dict[str, list[str]]:
    """study id -> the PHI values injected into its raw report (phi_ground_truth.jsonl)."""
    out: dict[str, list[str]] = {}
    for line in (root / "phi_ground_truth.jsonl").read_text().splitlines():
        entry = json.loads(line)
        raw = (root / entry["path"]).read_text()
        out[entry["report_id"]] = [raw[s:e] for s, e, _ in entry["spans"]]
    return out


def test_preview_json_is_what_the_training_stream_yields_without_phi(layout, capsys):
    root, _ = layout
    rows = preview(capsys, "--root", str(root), "--n", "1000")
    records = {r.id: r for r in open_source(SOURCE, root, splits=["train"], views=("PA", "AP"))}
    assert rows and {r["id"] for r in rows} == set(records)  # every train record, once
    assert len(rows) == len(records)

    # The texts the training stream hands the collator (one epoch of the records path).
    cfg = dataclasses.replace(preview_config(source=SOURCE, root=str(root)).data, num_workers=0)
    stream = build_pipeline(cfg, image_size=128).train(
        batch_size=2, collator=lambda samples: [(s.id, s.text) for s in samples]
    )
    batches = stream.batches()
    trained = dict(pair for _ in range(len(rows) // 2) for pair in next(batches))
    by_id = {r["id"]: r for r in rows}
    assert len(trained) == len(rows) // 2 * 2
    assert all(by_id[i]["text"] == text for i, text in trained.items())

    phi = injected_phi(root)
    n_values = 0
    for row in rows:
        rec = records[row["id"]]
        values = phi[rec.study_id]
        assert values and all(v in rec.report for v in values)  # the raw report carries PHI
        for v in values:
            n_values += 1
            assert not re.search(rf"(?<!\w){re.escape(v)}(?!\w)", row["text"]), (v, row["text"])
        assert row["labels"] == {k: rec.labels.get(k) for k in CHEXPERT_LABELS}
        assert row["image"]["height"] == row["image"]["width"] == 128  # tiny-cpu's img_size
        assert row["image"]["min"] < row["image"]["mean"] < row["image"]["max"]
    assert n_values >= len(rows)
    assert any("[PHI]" in row["text"] for row in rows)  # scrubbed, not dropped


def test_preview_from_shards_gives_the_records_texts(layout, capsys):
    root, shards = layout
    from_records = preview(capsys, "--root", str(root), "--n", "1000")
    from_shards = preview(capsys, "--root", str(root), "--shards", str(shards), "--n", "1000")
    assert len(from_shards) == len(from_records)
    texts = {r["id"]: r["text"] for r in from_records}
    assert {r["id"]: r["text"] for r in from_shards} == texts
    labels = {r["id"]: r["labels"] for r in from_records}
    assert {r["id"]: r["labels"] for r in from_shards} == labels
    for row in from_shards:
        assert row["image"]["height"] == row["image"]["width"] == 128


def test_preview_first_n_and_readable_form(layout, capsys):
    root, _ = layout
    rows = preview(capsys, "--root", str(root), "--n", "3")
    assert len(rows) == 3
    assert main(["data", "preview", "--source", SOURCE, "--root", str(root), "--n", "3"]) == 0
    out = capsys.readouterr().out
    blocks = [b for b in out.splitlines() if not b.startswith(" ")]
    assert [b.split()[0] for b in blocks] == [r["id"] for r in rows]
    assert out.count("  labels: ") == 3 and out.count("  text: ") == 3
    assert rows[0]["text"].split()[0] in out


def test_preview_bad_arguments_are_clear_errors(layout, capsys):
    root, _ = layout
    assert main(["data", "preview", "--source", SOURCE, "--root", str(root), "--n", "0"]) == 2
    assert "--n must be >= 1" in capsys.readouterr().err
    missing = ["data", "preview", "--source", SOURCE, "--root", str(root / "nope")]
    assert main(missing) == 2
    assert "does not exist" in capsys.readouterr().err


def test_preview_subprocess(layout, tmp_path, capsys):
    root, _ = layout
    expected = preview(capsys, "--root", str(root), "--n", "2")
    cmd = [sys.executable, "-m", "medtrain", "data", "preview", "--source", SOURCE]
    proc = subprocess.run(
        [*cmd, "--root", str(root), "--n", "2", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == expected
