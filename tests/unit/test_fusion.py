"""Fusion strategies: every attention implementation agrees, padding never leaks, activation
checkpointing changes nothing but memory, `none` is the identity on text; registry names."""

import pytest
import torch
from torch import nn

from medtrain.models.config import FUSION_NAMES
from medtrain.models.fusion import FUSIONS, FusionConfig, build_fusion

B, LT, LI, C, CV = 3, 11, 16, 32, 24
# Strategies with cross-modal layers (`none` has none: tested on its own below).
MIXING = sorted(n for n in FUSIONS if n != "none")


def make(name: str, impl: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = FusionConfig(name=name, num_layers=2, num_heads=4, attn_impl=impl)
    return build_fusion(cfg, text_dim=C, image_dim=CV, norm=nn.LayerNorm)


def inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(B, LT, C, generator=g)
    lens = torch.tensor([LT, 5, 1])
    image = torch.randn(B, LI, CV, generator=g)
    return text, lens, image


def valid(x, lens):
    return torch.cat([x[b, : int(lens[b])] for b in range(len(lens))])


@pytest.mark.parametrize("name", MIXING)
def test_every_attention_impl_gives_same_outputs_and_grads(name):
    text, lens, image = inputs(1)
    results = {}
    for impl in ("eager", "sdpa"):  # triton: tests/kernels/test_fusion_triton.py
        m = make(name, impl)
        t, i = text.clone().requires_grad_(), image.clone().requires_grad_()
        out = m(t, lens, i)
        loss = valid(out.text, lens).square().sum()
        if out.image is not None:
            loss = loss + out.image.square().sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters()}
        results[impl] = (valid(out.text, lens).detach(), t.grad, i.grad, grads)
    base = results["eager"]
    assert base[2] is not None and base[2].abs().sum() > 0  # the image reaches the loss
    for impl, res in results.items():
        torch.testing.assert_close(res[0], base[0], atol=2e-5, rtol=1e-4, msg=impl)
        torch.testing.assert_close(res[1], base[1], atol=2e-5, rtol=1e-4, msg=impl)
        torch.testing.assert_close(res[2], base[2], atol=2e-5, rtol=1e-4, msg=impl)
        assert res[3].keys() == base[3].keys()
        for n in base[3]:
            torch.testing.assert_close(res[3][n], base[3][n], atol=2e-5, rtol=1e-4, msg=n)


@pytest.mark.parametrize("name", MIXING)
def test_padding_content_does_not_leak(name):
    text, lens, image = inputs(2)
    m = make(name, "sdpa").eval()
    a = m(text, lens, image)
    text2 = text.clone()
    for b in range(B):
        text2[b, int(lens[b]) :] = 1e3 * torch.randn_like(text2[b, int(lens[b]) :])
    b_ = m(text2, lens, image)
    torch.testing.assert_close(valid(a.text, lens), valid(b_.text, lens), atol=1e-4, rtol=1e-4)
    if a.image is not None:
        torch.testing.assert_close(a.image, b_.image, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", MIXING)
def test_every_parameter_gets_gradient_and_image_matters(name):
    text, lens, image = inputs(3)
    m = make(name, "sdpa")
    out = m(text, lens, image)
    loss = out.text.square().mean() + (0 if out.image is None else out.image.square().mean())
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    out2 = m(text, lens, image + 1.0)
    assert not torch.allclose(out.text, out2.text)  # text states depend on the image


@pytest.mark.parametrize("name", MIXING)
def test_grad_checkpointing_same_result(name):
    """Same outputs, input gradients and every parameter gradient; and the layers really are
    recomputed in backward (else the comparison would be of one computation with itself)."""
    text, lens, image = inputs(4)
    m = make(name, "sdpa")
    calls = {"n": 0}
    for layer in m.modules():
        if isinstance(layer, nn.Linear):
            layer.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    res = []
    for ckpt in (False, True):
        m.zero_grad(set_to_none=True)
        m.set_grad_checkpointing(ckpt)
        t, i = text.clone().requires_grad_(), image.clone().requires_grad_()
        calls["n"] = 0
        out = m(t, lens, i)
        forward_calls = calls["n"]
        loss = (valid(out.text, lens) * torch.linspace(-1, 1, C)).sum()
        if out.image is not None:
            loss = loss + out.image.square().mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        res.append((valid(out.text, lens).detach(), t.grad, i.grad, grads))
        recomputed = calls["n"] - forward_calls
        assert (recomputed > 0) == ckpt, (ckpt, recomputed)
    (o0, t0, i0, g0), (o1, t1, i1, g1) = res
    torch.testing.assert_close(o1, o0)
    torch.testing.assert_close(t1, t0)
    torch.testing.assert_close(i1, i0)
    assert g1.keys() == g0.keys() == {n for n, _ in m.named_parameters()}
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], atol=1e-6, rtol=1e-5, msg=n)


def test_none_passes_text_through_and_ignores_the_image():
    text, lens, image = inputs(5)
    m = make("none", "sdpa")
    assert not list(m.parameters())
    t = text.clone().requires_grad_()
    out = m(t, lens, image)
    assert out.image is None
    assert torch.equal(out.text, text)  # unchanged, padding rows included
    assert torch.equal(m(text, lens, 100 * image + 3).text, text)  # the image plays no part
    (out.text * 2).sum().backward()
    torch.testing.assert_close(t.grad, torch.full_like(text, 2.0))  # identity in backward
    m.set_grad_checkpointing(True)  # accepted, and still the identity
    assert torch.equal(m(text, lens, image).text, text)


def test_registry_names_match_config_names():
    assert tuple(sorted(FUSIONS)) == tuple(sorted(FUSION_NAMES))


def test_unknown_fusion_lists_valid():
    with pytest.raises(ValueError, match="coattn"):
        make("film", "sdpa")
