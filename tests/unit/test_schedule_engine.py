import json
import math

import pytest
import torch

from medtrain.train.config import TrainConfig
from medtrain.train.engine import deepspeed_config, param_groups
from medtrain.train.schedule import lr_factor, warmup_cosine


def test_linear_warmup_then_cosine_to_floor():
    total, frac, floor = 200, 0.1, 0.05
    f = [lr_factor(s, total=total, warmup_fraction=frac, min_ratio=floor) for s in range(total)]
    assert f[0] == pytest.approx(1 / 20) and f[9] == pytest.approx(10 / 20)
    assert f[19] == pytest.approx(1.0) and f[20] == pytest.approx(1.0)
    diffs = [b - a for a, b in zip(f[:20], f[1:21], strict=True)]
    assert all(d == pytest.approx(1 / 20) for d in diffs[:19])  # linear, not log
    assert all(b <= a + 1e-12 for a, b in zip(f[20:-1], f[21:], strict=True))  # monotone decay
    mid = 20 + 90
    assert f[mid] == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(total, total=total, warmup_fraction=frac, min_ratio=floor) == pytest.approx(
        floor
    )


def test_scheduler_drives_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = warmup_cosine(opt, total=10, warmup_fraction=0.2, min_ratio=0.0)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] < 0.1


def test_param_groups_exclude_norm_bias_and_logit_scale(tiny_cfg, vocab_size):
    from medtrain.models.medvlp import MedVLP

    model = MedVLP(tiny_cfg(), vocab_size)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = {id(p): n for n, p in model.named_parameters()}
    nd = {ids[id(p)] for p in no_decay["params"]}
    d = {ids[id(p)] for p in decay["params"]}
    assert "logit_scale.log_scale" in nd
    params = dict(model.named_parameters())
    assert nd == {n for n, p in params.items() if p.ndim <= 1} | model.no_weight_decay()
    assert "mlm_head.transform.2.weight" in nd  # a LayerNorm whose name lacks "norm"
    assert "text.bert.embeddings.word_embeddings.weight" in d
    assert len(d) + len(nd) == len(ids)


@pytest.mark.parametrize(
    "micro,accum,glob,world,want",
    [
        (8, 0, 0, 1, (8, 1, 8)),
        (8, 4, 0, 2, (8, 4, 64)),
        (8, 0, 64, 2, (8, 4, 64)),
        (8, 4, 64, 2, (8, 4, 64)),
    ],
)
def test_batch_layout_derives_the_unset_value(micro, accum, glob, world, want):
    cfg = TrainConfig(micro_batch_size=micro, grad_accum_steps=accum, global_batch_size=glob)
    assert cfg.batch_layout(world) == want


def test_batch_layout_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="not a multiple"):
        TrainConfig(micro_batch_size=8, global_batch_size=60).batch_layout(2)
    with pytest.raises(ValueError, match="set only one"):
        TrainConfig(micro_batch_size=8, grad_accum_steps=2, global_batch_size=64).batch_layout(2)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_config_owns_batch_stage_precision_clipping(stage):
    cfg = TrainConfig(
        micro_batch_size=4, global_batch_size=32, zero_stage=stage, grad_clip=0.5, precision="fp32"
    )
    ds = deepspeed_config(cfg, world_size=2)
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 32 and ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage"] == stage and ds["bf16"]["enabled"] is False
    json.dumps(ds)


def test_shipped_ds_configs_set_clipping_explicitly():
    from medtrain.train.engine import PACKAGE_DS_CONFIGS

    files = sorted(PACKAGE_DS_CONFIGS.glob("*.json"))  # the shipped copies (package data)
    assert len(files) >= 5
    for f in files:
        ds = json.loads(f.read_text())
        assert ds["gradient_clipping"] == 1.0 and "stage" in ds["zero_optimization"], f


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected",
    [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")],
)
def test_precision_auto_picks_bf16_only_where_the_cpu_has_it(
    monkeypatch, avx512_bf16, amx, expected
):
    from medtrain.train.engine import resolve_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    precision, why = resolve_precision("auto", "cpu")
    assert precision == expected, why
    assert resolve_precision("bf16", "cpu")[0] == "bf16"  # explicit values are honoured
    assert resolve_precision("fp32", "cpu")[0] == "fp32"


def test_precision_rejects_unknown_values():
    with pytest.raises(ValueError, match="train.precision"):
        TrainConfig(precision="fp16")
