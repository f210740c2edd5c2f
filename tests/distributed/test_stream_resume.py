"""Streaming-loader resume: stop mid-epoch, resume on the same / fewer / more ranks and workers,
and every sample of the epoch is seen exactly once (no repeats, no losses)."""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from medtrain.data.config import ShardConfig
from medtrain.data.images import ImageConfig
from medtrain.data.records import Record, Sample
from medtrain.data.shards.read import ShardLoader, ShardStream, merge_states
from medtrain.data.shards.write import prepare_shards

N = 53  # samples; 9 shards of 6 and 5: uneven on purpose
SEED, BUFFER, BATCH = 7, 4, 3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    records = []
    for i in range(N):
        path = root / f"{i}.png"
        Image.fromarray(np.full((16, 16), i * 4, np.uint8)).save(path)
        records.append(Record(id=f"s{i:03d}", image_path=path, report=f"FINDINGS: case {i}."))
    cfg = ShardConfig(shard_size=6, image_size=16, min_side=8, window_shards=2)
    prepare_shards(source="test", root=root, out=root / "shards", cfg=cfg, records=records)
    return root / "shards"


def ids_of(samples: list[Sample]) -> list[str]:
    return [s.id for s in samples]


def loader(shard_dir, rank, world, workers, state) -> ShardLoader:
    stream = ShardStream(
        shard_dir,
        image_size=16,
        image=ImageConfig(),
        seed=SEED,
        rank=rank,
        world=world,
        buffer=BUFFER,
        state=state,
    )
    return ShardLoader(stream, batch_size=BATCH, collate_fn=ids_of, num_workers=workers)


def consume(ld: ShardLoader, n_batches: int) -> list[tuple[int, str]]:
    """(epoch, id) of the samples of n batches; stops with workers still prefetching."""
    seen, it = [], iter(ld)
    for _ in range(n_batches):
        ids = next(it)
        seen += [(tag[0][0], i) for tag, i in zip(ld.last_tags, ids, strict=True)]
    del it
    return seen


def run(shard_dir, world, workers, state, n_batches):
    """Simulate `world` ranks in this process: -> (samples seen, merged checkpoint state)."""
    seen, states = [], []
    for rank in range(world):
        ld = loader(shard_dir, rank, world, workers, state)
        seen += consume(ld, n_batches)
        states.append(ld.state_dict())
    return seen, merge_states(states)


def assert_epoch0_exactly_once(seen: list[tuple[int, str]]) -> None:
    counts = Counter(i for e, i in seen if e == 0)
    assert set(counts) == {f"s{i:03d}" for i in range(N)}, "samples lost"
    assert max(counts.values()) == 1, f"repeated: {[i for i, c in counts.items() if c > 1]}"
    later = Counter((e, i) for e, i in seen if e > 0)
    assert not later or max(later.values()) == 1


@pytest.mark.parametrize("world,workers", [(2, 1), (1, 0), (3, 2)])
def test_resume_on_other_rank_and_worker_counts_sees_each_sample_once(shard_dir, world, workers):
    first, state = run(shard_dir, 2, 2, None, n_batches=4)  # 2 ranks x 2 workers, 24 of 53
    assert len(first) == 24 and state["epoch"] == 0
    assert sum(sum(v.values()) for v in state["consumed"].values()) == 24
    rest, final = run(shard_dir, world, workers, state, n_batches=-(-40 // world))
    assert_epoch0_exactly_once(first + rest)
    resumed = ShardStream(
        shard_dir, image_size=16, image=ImageConfig(), seed=SEED, buffer=BUFFER, state=final
    )
    assert resumed.start.epoch >= 1 and 0 not in resumed.start.consumed  # epoch 0 closed


def test_two_stops_and_epoch_order_changes(shard_dir):
    a, s1 = run(shard_dir, 2, 0, None, n_batches=3)
    b, s2 = run(shard_dir, 3, 1, s1, n_batches=2)
    c, s3 = run(shard_dir, 1, 0, s2, n_batches=30)
    assert_epoch0_exactly_once(a + b + c)
    e0 = [i for e, i in a + b + c if e == 0]
    e1 = [i for e, i in c if e == 1]
    assert e1[:10] != e0[:10]  # reshuffled per epoch
    assert s3["counters"]["samples"] + s3["run_counters"]["samples"] == len(a + b + c)


def test_same_world_restart_continues_where_it_stopped(shard_dir):
    full = consume(loader(shard_dir, 0, 1, 0, None), 12)
    ld = loader(shard_dir, 0, 1, 0, None)
    part = consume(ld, 5)
    rest = consume(loader(shard_dir, 0, 1, 0, ld.state_dict()), 7)
    assert part + rest == full  # one consumer: the identical sequence


# --------------------------------------------------------- real processes (gloo, 2 ranks)


def _rank_main(rank: int, shard_dir: str, out: str, port: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    ld = loader(shard_dir, rank, 2, 1, None)  # one dataloader worker process per rank
    seen = consume(ld, 5 if rank == 0 else 3)  # ranks stop at different points
    states = [None, None]
    dist.all_gather_object(states, ld.state_dict())
    Path(out, f"seen{rank}.json").write_text(json.dumps(seen))
    if rank == 0:
        Path(out, "state.json").write_text(json.dumps(merge_states(states)))
    dist.barrier()
    dist.destroy_process_group()


def test_two_process_gloo_run_resumed_on_one_rank(shard_dir, tmp_path, free_port):
    mp.spawn(_rank_main, args=(str(shard_dir), str(tmp_path), free_port()), nprocs=2)
    seen = [tuple(x) for r in (0, 1) for x in json.loads((tmp_path / f"seen{r}.json").read_text())]
    assert len(seen) == (5 + 3) * BATCH
    state = json.loads((tmp_path / "state.json").read_text())
    rest = consume(loader(shard_dir, 0, 1, 0, state), 20)
    assert_epoch0_exactly_once(seen + rest)


def test_state_from_other_shards_or_seed_is_refused(shard_dir):
    from medtrain.data.errors import DataError

    _, state = run(shard_dir, 1, 0, None, n_batches=1)
    with pytest.raises(DataError, match="train.seed"):
        ShardStream(shard_dir, image_size=16, image=ImageConfig(), seed=SEED + 1, state=state)
    with pytest.raises(DataError, match="same shard set"):
        bad = {**state, "fingerprint": "0" * 16}
        ShardStream(
            shard_dir, image_size=16, image=ImageConfig(), seed=SEED, buffer=BUFFER, state=bad
        )


# ------------------------------------------------ `medtrain pretrain` from shards, 2 -> 1 ranks


def test_pretrain_from_shards_resumes_loader_state_on_fewer_ranks(
    synth_mimic, tokenizer_dir, tmp_path, run_cli, tiny_overrides, launch, free_port, client_state
):
    """2-rank deepspeed run -> checkpoint -> resume as 1 process. ZeRO-0: DeepSpeed itself cannot
    re-partition ZeRO-1/2/3 optimizer state for a new world size without a universal checkpoint."""
    shards = tmp_path / "shards"
    prepare_shards(
        source="mimic-cxr-jpg",
        root=synth_mimic,
        out=shards,
        split="train",
        cfg=ShardConfig(shard_size=16, image_size=128),
    )
    run_dir = tmp_path / "run"
    extra = {
        "data.format": "shards",
        "data.shards": shards,
        "data.num_workers": 1,
        "train.zero_stage": 0,
        "train.ckpt_every": 2,
        "train.eval_every": 0,
        "data.max_eval_samples": 16,
    }
    sets = tiny_overrides(synth_mimic, tokenizer_dir, run_dir, **extra, **{"train.steps": 2})
    launch(
        [
            "--num_gpus",
            "2",
            "--master_port",
            str(free_port()),
            "--module",
            "medtrain",
            "pretrain",
            "--preset",
            "tiny-cpu",
            *sets,
        ]
    )
    two = client_state(run_dir, "step2")["stream"]
    assert sum(n for per in two["consumed"].values() for n in per.values()) == 2 * 8 * 2

    sets = tiny_overrides(synth_mimic, tokenizer_dir, run_dir, **extra, **{"train.steps": 3})
    proc = run_cli("pretrain", "--preset", "tiny-cpu", *sets, "--resume")
    assert "at step 2" in proc.stdout and "1 rank(s)" in proc.stdout
    three = client_state(run_dir, "step3")
    assert three["world_size"] == 1
    after = three["stream"]["consumed"]
    assert sum(n for per in after.values() for n in per.values()) == 2 * 8 * 2 + 8
    for epoch, per in two["consumed"].items():  # prefixes only grow: nothing re-served
        assert all(after.get(epoch, {}).get(name, 0) >= n for name, n in per.items())
