import pytest
import torch

from medtrain.data.errors import DataError
from medtrain.data.pipeline import DataConfig, PairDataset, ResumableSampler
from medtrain.synth.generate import SynthConfig, generate


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
    assert s["pixel_values"].shape == (1, 64, 64) and s["labels"].shape == (14,)
    texts = [ds[i]["text"] for i in range(len(ds))]
    assert all(t.strip() and "___" not in t for t in texts)  # placeholders normalized
    labels = torch.stack([ds[i]["labels"] for i in range(len(ds))])
    values = set(labels[~labels.isnan()].tolist())
    assert values <= {1.0, 0.0, -1.0} and labels.isnan().any()  # blanks kept as NaN


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
        assert s["id"] == ds.records[2].id  # the next sample stands in
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
