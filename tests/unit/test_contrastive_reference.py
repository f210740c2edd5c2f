"""Reference global-batch contrastive loss vs a direct full-matrix computation; MLM/composite."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from medtrain.kernels.contrastive.dispatch import CONTRASTIVE_IMPLS
from medtrain.kernels.contrastive.reference import contrastive_loss_reference
from medtrain.losses import (
    LossConfig,
    compute_losses,
    contrastive_loss,
    mlm_loss,
    resolve_contrastive_impl,
)
from medtrain.losses.config import CONTRASTIVE_NAMES

# clip_inputs(n, dim, seed) and clip_full_grads(img, txt, scale) (float64 full-matrix truth)
# are fixtures of tests/conftest.py.


@pytest.mark.parametrize("dim", [5, 16])
@pytest.mark.parametrize("n", [1, 3, 7, 32])
def test_single_process_matches_full_matrix(n, dim, clip_inputs, clip_full_grads) -> None:
    img, txt, scale = clip_inputs(n, dim, seed=n * 100 + dim)
    ref_loss, ref_gi, ref_gt, ref_gs = clip_full_grads(img, txt, scale)
    leaves = [t.clone().requires_grad_() for t in (img, txt, scale)]
    loss = contrastive_loss_reference(*leaves)
    loss.backward()
    assert loss.dtype == torch.float32 and loss.ndim == 0
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-5)
    for leaf, ref in zip(leaves, (ref_gi, ref_gt, ref_gs), strict=True):
        torch.testing.assert_close(leaf.grad.double(), ref, rtol=1e-4, atol=1e-6)


def test_low_precision_inputs_upcast(clip_inputs, clip_full_grads) -> None:
    img, txt, scale = clip_inputs(6, 8, seed=1)
    img16 = img.bfloat16().requires_grad_()
    txt16 = txt.bfloat16().requires_grad_()
    loss = contrastive_loss_reference(img16, txt16, scale)
    loss.backward()
    assert loss.dtype == torch.float32 and img16.grad.dtype == torch.bfloat16
    ref = clip_full_grads(img16.detach().float(), txt16.detach().float(), scale)[0]
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)


def test_shape_errors(clip_inputs) -> None:
    img, txt, scale = clip_inputs(4, 8, seed=2)
    with pytest.raises(ValueError, match="B_loc, E"):
        contrastive_loss_reference(img, txt[:3], scale)
    with pytest.raises(ValueError, match="scalar"):
        contrastive_loss_reference(img, txt, torch.ones(2))


# ------------------------------------------------------------ multi-process (gloo)

CASES = [(1, 4, 11), (3, 8, 12), (5, 16, 13)]  # (local batch b, dim, seed)


def _rank_worker(rank: int, world: int, init_file: str, out_dir: str, make_inputs) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results = []
        for b, dim, seed in CASES:
            img, txt, scale = make_inputs(world * b, dim, seed)  # same global batch everywhere
            sl = slice(rank * b, (rank + 1) * b)
            leaves = [img[sl].clone().requires_grad_(), txt[sl].clone().requires_grad_()]
            s = scale.clone().requires_grad_()
            # Through the dispatcher with the default group (group=None).
            loss = contrastive_loss(*leaves, s, impl="reference")
            loss.backward()
            results.append(
                {"loss": loss.detach(), "gi": leaves[0].grad, "gt": leaves[1].grad, "gs": s.grad}
            )
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears down gloo while a peer is still receiving
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_multi_process_matches_global(world, tmp_path, clip_inputs, clip_full_grads) -> None:
    mp.spawn(
        _rank_worker,
        args=(world, str(tmp_path / "store"), str(tmp_path), clip_inputs),
        nprocs=world,
        join=True,
    )
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for c, (b, dim, seed) in enumerate(CASES):
        ref_loss, ref_gi, ref_gt, ref_gs = clip_full_grads(*clip_inputs(world * b, dim, seed))
        gs_mean = torch.stack([per_rank[r][c]["gs"] for r in range(world)]).double().mean()
        torch.testing.assert_close(gs_mean, ref_gs, rtol=1e-4, atol=1e-6)
        for r in range(world):
            res = per_rank[r][c]
            sl = slice(r * b, (r + 1) * b)
            torch.testing.assert_close(res["loss"].double(), ref_loss, rtol=1e-5, atol=1e-5)
            # open_clip per-rank gradient == world * d(global)/d(local slice) (DDP averages).
            torch.testing.assert_close(res["gi"].double(), world * ref_gi[sl], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(res["gt"].double(), world * ref_gt[sl], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ dispatch, MLM, composite


def test_dispatch(clip_inputs) -> None:
    assert resolve_contrastive_impl("auto", "cpu") in set(CONTRASTIVE_IMPLS) - {"auto"}
    assert resolve_contrastive_impl("reference") == "reference"
    with pytest.raises(ValueError, match="valid: auto, cpp, reference, triton"):
        resolve_contrastive_impl("nope")
    with pytest.raises(ValueError, match="unknown contrastive implementation 'nope'"):
        contrastive_loss(*clip_inputs(2, 4, seed=0), impl="nope")
    img, txt, scale = clip_inputs(4, 8, seed=3)
    torch.testing.assert_close(
        contrastive_loss(img, txt, scale), contrastive_loss_reference(img, txt, scale)
    )


def test_registry_names_match_config_names() -> None:
    assert tuple(sorted(CONTRASTIVE_IMPLS)) == tuple(sorted(CONTRASTIVE_NAMES))


def test_mlm_loss() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 11, generator=g, dtype=torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 11, (6,), generator=g)
    loss = mlm_loss(logits, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.detach().float(), labels))
    loss.backward()
    assert logits.grad is not None

    empty = torch.zeros(0, 11, requires_grad=True)
    zero = mlm_loss(empty, torch.zeros(0, dtype=torch.long))
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()
    assert empty.grad is not None and empty.grad.shape == (0, 11)


def test_compute_losses_weights(clip_inputs) -> None:
    img, txt, scale = clip_inputs(4, 8, seed=4)
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(5, 9, generator=g), torch.randint(0, 9, (5,), generator=g)
    out = {"image_emb": img, "text_emb": txt, "logit_scale": scale}
    con = contrastive_loss_reference(img, txt, scale)
    mlm = mlm_loss(logits, labels)

    res = compute_losses(
        {**out, "mlm_logits": logits, "mlm_labels": labels},
        LossConfig(contrastive_weight=0.5, mlm_weight=2.0),
    )
    assert set(res) == {"loss", "contrastive", "mlm"}
    torch.testing.assert_close(res["loss"], 0.5 * con + 2.0 * mlm)

    res = compute_losses(
        {**out, "mlm_logits": logits, "mlm_labels": labels}, LossConfig(mlm_weight=0.0)
    )
    assert "mlm" not in res
    torch.testing.assert_close(res["loss"], con)

    res = compute_losses({**out, "mlm_logits": None, "mlm_labels": None}, LossConfig())
    assert "mlm" not in res
    torch.testing.assert_close(res["loss"], con)

    res = compute_losses(
        {**out, "mlm_logits": logits, "mlm_labels": labels}, LossConfig(contrastive_weight=0.0)
    )
    assert set(res) == {"loss", "mlm"}
    torch.testing.assert_close(res["loss"], mlm)

    with pytest.raises(ValueError, match="contrastive"):
        compute_losses(out, LossConfig(contrastive_impl="nope"))
    with pytest.raises(ValueError, match=">= 0"):
        LossConfig(mlm_weight=-1.0)
    with pytest.raises(ValueError, match="at least one"):
        LossConfig(contrastive_weight=0.0, mlm_weight=0.0)
