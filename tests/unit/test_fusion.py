import pytest
import torch
from torch import nn

from medtrain.models.fusion import FUSIONS, FusionConfig, build_fusion

B, LT, LI, C, CV = 3, 11, 16, 32, 24


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


@pytest.mark.parametrize("name", sorted(FUSIONS))
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
    for impl, res in results.items():
        torch.testing.assert_close(res[0], base[0], atol=2e-5, rtol=1e-4, msg=impl)
        torch.testing.assert_close(res[1], base[1], atol=2e-5, rtol=1e-4, msg=impl)
        if name != "none":
            torch.testing.assert_close(res[2], base[2], atol=2e-5, rtol=1e-4, msg=impl)
        for n in base[3]:
            torch.testing.assert_close(res[3][n], base[3][n], atol=2e-5, rtol=1e-4, msg=n)


@pytest.mark.parametrize("name", sorted(FUSIONS))
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


@pytest.mark.parametrize("name", sorted(n for n in FUSIONS if n != "none"))
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


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_grad_checkpointing_same_result(name):
    text, lens, image = inputs(4)
    m = make(name, "sdpa")
    res = []
    for ckpt in (False, True):
        m.zero_grad()
        m.set_grad_checkpointing(ckpt)
        t = text.clone().requires_grad_()
        m(t, lens, image).text.sum().backward()
        res.append(t.grad)
    torch.testing.assert_close(res[0], res[1])


def test_unknown_fusion_lists_valid():
    with pytest.raises(ValueError, match="coattn"):
        make("film", "sdpa")
