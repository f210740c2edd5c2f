"""Every fusion strategy with attention layers gives the same outputs and gradients with eager,
sdpa and triton (`none` has no attention: tests/unit/test_fusion.py checks it is the identity).

fp32, tiny dims; on CPU the triton kernel runs in Triton's interpreter (tests/conftest.py).
Head dim 32 (a size the kernel is tuned for); 20 image tokens and ragged text lengths (full,
middle, 1) make every attention call end on a ragged tile.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medtrain.models.fusion import FUSIONS, FusionConfig, build_fusion

B, LT, LI, C, CV, HEADS = 3, 13, 20, 64, 24, 2  # head dim C / HEADS = 32
IMPLS = ("eager", "sdpa", "triton")
MIXING = sorted(n for n in FUSIONS if n != "none")


def run(name: str, impl: str, text, lens, image):
    torch.manual_seed(0)  # same weights for every implementation
    cfg = FusionConfig(name=name, num_layers=2, num_heads=HEADS, attn_impl=impl)
    model = build_fusion(cfg, text_dim=C, image_dim=CV, norm=nn.LayerNorm)
    t, i = text.clone().requires_grad_(True), image.clone().requires_grad_(True)
    out = model(t, lens, i)
    valid = [out.text[b, : int(lens[b])] for b in range(B)]  # padded text rows are unspecified
    loss = sum((x * torch.linspace(-1, 1, C)).sum() for x in valid)
    if out.image is not None:
        loss = loss + out.image.square().mean()
    loss.backward()
    results = {"text": torch.cat(valid).detach(), "d_text": t.grad, "d_image": i.grad}
    if out.image is not None:
        results["image"] = out.image.detach()
    results |= {f"d_{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
    return results


@pytest.mark.parametrize("name", MIXING)
def test_fusion_same_with_every_attention_impl(name):
    g = torch.Generator().manual_seed(7)
    text = torch.randn(B, LT, C, generator=g)
    image = torch.randn(B, LI, CV, generator=g)
    lens = torch.tensor([LT, 6, 1])
    base = run(name, "eager", text, lens, image)
    assert base["d_image"] is not None and base["d_image"].abs().sum() > 0
    for impl in IMPLS[1:]:
        got = run(name, impl, text, lens, image)
        assert got.keys() == base.keys(), impl
        for key, want in base.items():
            if want is None:
                assert got[key] is None, (impl, key)
                continue
            torch.testing.assert_close(got[key], want, atol=1e-5, rtol=1e-4, msg=f"{impl} {key}")
