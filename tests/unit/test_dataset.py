"""The data pipeline (data/pipeline.py): records-path samples, LCN placement, sampler, streams."""

import dataclasses

import pytest
import torch

from medtrain.data.config import DataConfig, ImageConfig
from medtrain.data.errors import DataError
from medtrain.data.pipeline import PairDataset, ResumableSampler, build_pipeline
from medtrain.data.records import Sample
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate


@pytest.fixture(scope="module")
def small_mimic(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic")
    generate(SynthConfig(layout="mimic-cxr-jpg", n=40, seed=5, image_size=96), out)
    return out


def split_of(root, split):
    return PairDataset(DataConfig(root=str(root), num_workers=0), split, 64)


def test_samples_have_expected_fields(small_mimic):
    ds = split_of(small_mimic, "train")
    s = ds[0]
    assert isinstance(s, Sample) and s.id == ds.records[0].id
    assert s.pixel_values.shape == (1, 64, 64) and s.labels.shape == (14,)
    assert s.question is None and s.answer is None
    texts = [ds[i].text for i in range(len(ds))]
    assert all(t.strip() and "___" not in t for t in texts)  # placeholders normalized
    labels = torch.stack([ds[i].labels for i in range(len(ds))])
    values = set(labels[~labels.isnan()].tolist())
    assert values <= {1.0, 0.0, -1.0} and labels.isnan().any()  # blanks kept as NaN


def test_limit_takes_the_first_usable_records(small_mimic):
    full = split_of(small_mimic, "train")
    first = PairDataset(DataConfig(root=str(small_mimic)), "train", 64, limit=3)
    assert [r.id for r in first.records] == [r.id for r in full.records[:3]]
    assert first.texts == full.texts[:3]


def test_empty_report_skipped_and_recorded(small_mimic):
    ds = split_of(small_mimic, "train")
    victim = ds.records[0]
    report = victim.image_path.parent.with_suffix(".txt")
    original = report.read_text()
    try:
        report.write_text("   \n")
        ds2 = split_of(small_mimic, "train")
        assert victim.id not in {r.id for r in ds2.records}
        assert any(i == victim.id and "empty" in why for i, why in ds2.skipped)
    finally:
        report.write_text(original)


def test_corrupt_image_substituted_or_raised(small_mimic):
    ds = split_of(small_mimic, "train")
    path = ds.records[1].image_path
    data = path.read_bytes()
    try:
        path.write_bytes(data[: len(data) // 4])
        s = ds[1]
        assert s.id == ds.records[2].id  # the next sample stands in
        strict = PairDataset(DataConfig(root=str(small_mimic), on_bad_image="error"), "train", 64)
        with pytest.raises(DataError, match="unreadable or corrupt"):
            strict[1]
    finally:
        path.write_bytes(data)


def test_missing_root_and_empty_split_are_clear_errors(small_mimic, tmp_path):
    with pytest.raises(DataError, match="does not exist; generate the demo data"):
        split_of(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no usable 'holdout' records"):
        split_of(small_mimic, "holdout")


def test_manifest_file_itself_is_a_root(tmp_path):
    out = tmp_path / "man"
    generate(SynthConfig(layout="manifest", n=12, seed=1, image_size=64), out)
    (manifest,) = out.glob("manifest.*")
    cfg = DataConfig(source="manifest", root=str(manifest), views=())
    by_file = PairDataset(cfg, "train", 32)
    by_folder = PairDataset(dataclasses.replace(cfg, root=str(out)), "train", 32)
    assert len(by_file) > 0 and by_file.texts == by_folder.texts


# ------------------------------------------------------------------- pipeline: LCN placement


def test_gpu_lcn_is_placed_once_for_training_and_evaluation(small_mimic):
    """lcn_device=gpu: train and eval samples leave the LCN to on_device, which then gives the
    worker-LCN input; lcn_device=worker: on_device is a cast only."""
    image = ImageConfig(lcn="gaussian", lcn_sigma=3.0)
    worker_cfg = DataConfig(root=str(small_mimic), num_workers=0, image=image)
    gpu_cfg = dataclasses.replace(worker_cfg, image=dataclasses.replace(image, lcn_device="gpu"))
    worker, gpu = (build_pipeline(c, image_size=64) for c in (worker_cfg, gpu_cfg))
    for pick in (lambda p: p.samples("train"), lambda p: p.eval()):
        w, g = pick(worker)[0], pick(gpu)[0]
        assert w.id == g.id
        assert g.pixel_values.min() >= 0 and g.pixel_values.max() <= 1  # fitted, not normalized
        assert w.pixel_values.min() < 0  # normalized in the worker
        batch = {"pixel_values": g.pixel_values[None], "ids": [g.id]}
        out = gpu.on_device(batch, "cpu", torch.float32)
        torch.testing.assert_close(out["pixel_values"][0], w.pixel_values, atol=1e-4, rtol=0)
        assert out["ids"] == [g.id]
        same = worker.on_device({"pixel_values": w.pixel_values[None]}, "cpu", torch.bfloat16)
        assert same["pixel_values"].dtype == torch.bfloat16
        assert torch.equal(same["pixel_values"][0], w.pixel_values.bfloat16())


def test_eval_reads_the_eval_split(small_mimic):
    pipe = build_pipeline(DataConfig(root=str(small_mimic), eval_split="test"), image_size=32)
    test_ids = {r.id for r in split_of(small_mimic, "test").records}
    ev = pipe.eval()
    assert {ev[i].id for i in range(len(ev))} == test_ids


# ----------------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("n,batch,world", [(103, 4, 2), (50, 3, 3), (17, 2, 1)])
def test_sampler_partitions_each_epoch_across_ranks(n, batch, world):
    per_rank = [
        list(ResumableSampler(n, batch_size=batch, rank=r, world=world, seed=1))
        for r in range(world)
    ]
    flat = [i for idx in per_rank for i in idx]
    steps = n // (batch * world)
    assert all(len(x) == steps * batch for x in per_rank)
    assert len(set(flat)) == len(flat) == steps * batch * world  # disjoint, no repeats


def test_sampler_resume_mid_epoch_and_reshuffle_per_epoch():
    full = ResumableSampler(64, batch_size=4, rank=1, world=2, seed=0)
    order = list(full)
    resumed = ResumableSampler(64, batch_size=4, rank=1, world=2, seed=0)
    resumed.set_position(0, 3)
    assert list(resumed) == order[12:] and len(resumed) == len(order) - 12
    full.set_position(1, 0)
    assert list(full) != order


def test_sampler_too_little_data():
    with pytest.raises(DataError, match="cannot fill one step"):
        ResumableSampler(5, batch_size=4, rank=0, world=2, seed=0)


# ------------------------------------------------------------------------- records train stream


def test_records_stream_batches_follow_the_sampler_and_resume(small_mimic):
    pipe = build_pipeline(DataConfig(root=str(small_mimic), num_workers=0), image_size=32)

    def ids(samples: list[Sample]) -> list[str]:
        return [s.id for s in samples]

    stream = pipe.train(batch_size=4, collator=ids, seed=3)
    records = stream.dataset.records
    order = list(ResumableSampler(len(records), batch_size=4, rank=0, world=1, seed=3))
    it = stream.batches()
    got = [next(it) for _ in range(3)]
    assert got == [[records[i].id for i in order[k * 4 : k * 4 + 4]] for k in range(3)]
    again = pipe.train(batch_size=4, collator=ids, seed=3)
    again.restore({"data": {"0": {"epoch": stream.epoch, "micro": stream.micro}}})
    assert next(again.batches()) == [records[i].id for i in order[12:16]]
