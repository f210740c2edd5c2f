"""Fine-tuning data: label-fraction sampling by patient, split loading with counted skips, the
resumable stream over tiny training sets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from medtrain.data.records import Record
from medtrain.finetune.data import TrainStream, label_fraction, load_split


def records(n_subjects: int, per_subject: int = 3) -> list[Record]:
    return [
        Record(id=f"s{s}-{i}", image_path=Path("x.png"), subject_id=f"p{s}")
        for s in range(n_subjects)
        for i in range(per_subject)
    ]


def test_label_fraction_is_by_patient_deterministic_and_sized():
    recs = records(200)
    a = label_fraction(recs, 0.1, seed=7)
    assert a == label_fraction(recs, 0.1, seed=7)  # same seed, same subset
    assert a != label_fraction(recs, 0.1, seed=8)
    subjects = {r.subject_id for r in a}
    assert len(subjects) == 20  # 10% of 200 patients
    assert len(a) == 60  # every study of a chosen patient, none of the others
    assert a == [r for r in recs if r.subject_id in subjects]  # order kept
    # 1%: at least one patient; smaller fractions are subsets of nothing in particular
    tiny = label_fraction(recs[:30], 0.01, seed=0)
    assert len({r.subject_id for r in tiny}) == 1 and len(tiny) == 3
    assert label_fraction(recs, 1.0, seed=3) == recs
    # records without subject_id are sampled by their own id
    lone = [Record(id=f"r{i}", image_path=Path("x.png")) for i in range(50)]
    assert len(label_fraction(lone, 0.1, seed=0)) == 5


def test_load_split_counts_task_skips(synth_mimic, caplog):
    from medtrain.config import load_config

    cfg = load_config("finetune-cls-cpu", [f"data.root={synth_mimic}"])
    every, _ = load_split(cfg.data, "train", lambda r: None)
    with caplog.at_level(logging.WARNING):
        kept, skipped = load_split(
            cfg.data, "train", lambda r: "odd id" if int(r.id[-1], 16) % 2 else None
        )
    assert len(kept) + len(skipped) == len(every) and skipped
    assert all(why == "odd id" for _, why in skipped)
    assert f"skipped {len(skipped)} records" in caplog.text
    from medtrain.data.errors import DataError

    with pytest.raises(DataError, match="no usable 'train' records"):
        load_split(cfg.data, "train", lambda r: "never")


def stream(n: int, batch: int, world: int = 1, rank: int = 0) -> TrainStream:
    ds = [{"i": i} for i in range(n)]
    return TrainStream(
        ds,
        batch_size=batch,
        rank=rank,
        world=world,
        seed=0,
        collate=lambda items: torch.tensor([it["i"] for it in items]),
    )


def test_tiny_training_set_is_repeated_to_fill_a_step():
    s = stream(3, batch=8, world=2)  # 3 samples, global batch 16
    it = s.batches()
    first = next(it)
    assert first.shape == (8,) and set(first.tolist()) <= {0, 1, 2}
    assert s.n_train == 3


def test_stream_resumes_at_its_position():
    import torch.distributed as dist

    from medtrain.train.engine import init_distributed

    init_distributed()
    s = stream(20, batch=4)
    it = s.batches()
    seen = [next(it).tolist() for _ in range(7)]  # into the second epoch (5 batches each)
    state = s.state(dist.get_world_size())
    after = [next(it).tolist() for _ in range(4)]
    t = stream(20, batch=4)
    t.restore(state)
    assert [b.tolist() for b, _ in zip(t.batches(), range(4), strict=False)] == after
    assert sorted(sum(seen[:5], [])) == list(range(20))  # one epoch sees every sample once


def test_read_train_keeps_with_the_pre_state_rule_as_the_loop_does(monkeypatch):
    """`medtrain eval` and the loop read the training split the same way: task.keep before the
    task has its state. cls's keep after load_state is stricter (a usable label of the fitted
    set); reading after it would drop the Fracture-only patients and sample another subset."""
    import medtrain.finetune.data as fdata
    from medtrain.config import RunConfig
    from medtrain.finetune.config import FinetuneConfig
    from medtrain.finetune.tasks.cls import ClsTask

    def rec(i: int, labels: dict) -> Record:
        return Record(id=f"r{i}", image_path=Path("x.png"), subject_id=f"p{i}", labels=labels)

    split = [rec(i, {"Edema": float(i % 2)}) for i in range(6)]
    split += [rec(i, {"Edema": None, "Fracture": 0.0}) for i in range(6, 12)]  # no usable Edema

    def fake_load_split(data, name, keep):
        assert name == "train"
        return [r for r in split if keep(r) is None], []

    monkeypatch.setattr(fdata, "load_split", fake_load_split)
    cfg = RunConfig()
    cfg.finetune = FinetuneConfig(label_fraction=0.5, fraction_seed=3)
    fitted = ClsTask(cfg, None)
    all_fit, train_fit = fdata.read_train(cfg, fitted)  # a new run: fit_vocab
    assert fitted.labels == ["Edema"] and [r.id for r in all_fit] == [r.id for r in split]
    evaluated = ClsTask(cfg, None)
    all_ev, train_ev = fdata.read_train(cfg, evaluated, fitted.state())  # `medtrain eval`
    assert evaluated.labels == ["Edema"]
    assert all_ev == all_fit and train_ev == train_fit
    assert train_ev == label_fraction(split, 0.5, 3)  # 6 of the 12 patients
    # what reading after load_state (the old `medtrain eval` order) would have sampled instead
    strict = [r for r in split if evaluated.keep(r) is None]
    assert len(strict) == 6 and label_fraction(strict, 0.5, 3) != train_ev
