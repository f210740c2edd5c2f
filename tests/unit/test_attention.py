import math
import zlib

import pytest
import torch

from medtrain.models.attention import ATTENTION_IMPLS, get_attention
from medtrain.models.config import ATTENTION_NAMES

# The pure-PyTorch implementations; the Triton kernel is tested in tests/kernels/.
TORCH_IMPLS = ("eager", "sdpa")


def loop_reference(q, k, v, q_lens, kv_lens, scale):
    """Per-sample fp64 reference with explicit slicing (no masks)."""
    B, H, Lq, D = q.shape
    out = torch.zeros(B, H, Lq, D, dtype=torch.float64)
    for b in range(B):
        ql = Lq if q_lens is None else int(q_lens[b])
        kl = k.shape[2] if kv_lens is None else int(kv_lens[b])
        if kl == 0:
            continue
        s = q[b, :, :ql].double() @ k[b, :, :kl].double().transpose(-1, -2) * scale
        out[b, :, :ql] = torch.softmax(s, -1) @ v[b, :, :kl].double()
    return out


CASES = [  # B, H, Lq, Lk, D, with q_lens, with kv_lens
    (2, 3, 7, 49, 32, True, False),
    (3, 2, 1, 5, 16, False, True),
    (2, 1, 13, 13, 8, True, True),
    (1, 4, 77, 130, 64, True, True),
]


@pytest.mark.parametrize("impl", TORCH_IMPLS)
@pytest.mark.parametrize("B,H,Lq,Lk,D,use_q,use_kv", CASES)
def test_matches_reference_forward_and_backward(impl, B, H, Lq, Lk, D, use_q, use_kv):
    g = torch.Generator().manual_seed(zlib.crc32(f"{impl}-{B}-{Lq}-{Lk}".encode()))
    q, k, v = (torch.randn(B, H, n, D, generator=g) for n in (Lq, Lk, Lk))
    q_lens = torch.randint(1, Lq + 1, (B,), generator=g) if use_q else None
    kv_lens = torch.randint(1, Lk + 1, (B,), generator=g) if use_kv else None
    if use_kv and B > 1:
        kv_lens[0] = 0  # a sample with no valid key at all
    scale = 1 / math.sqrt(D)
    for t in (q, k, v):
        t.requires_grad_(True)
    out = get_attention(impl)(q, k, v, q_lens=q_lens, kv_lens=kv_lens)
    ref = loop_reference(q, k, v, q_lens, kv_lens, scale)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(out).all()

    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    qr, kr, vr = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref_grads = torch.autograd.grad(
        loop_reference(qr, kr, vr, q_lens, kv_lens, scale), (qr, kr, vr), dout.double()
    )
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)


def test_padded_rows_are_zero_and_keys_past_length_are_ignored():
    q, k, v = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    q_lens, kv_lens = torch.tensor([4, 6]), torch.tensor([5, 9])
    for impl in TORCH_IMPLS:
        attend = get_attention(impl)
        o = attend(q, k, v, q_lens=q_lens, kv_lens=kv_lens)
        assert o[0, :, 4:].abs().max() == 0
        k2, v2 = k.clone(), v.clone()
        k2[0, :, 5:] = 1e4
        v2[0, :, 5:] = -1e4  # garbage beyond kv_len must not leak in
        o2 = attend(q, k2, v2, q_lens=q_lens, kv_lens=kv_lens)
        torch.testing.assert_close(o2, o)


def test_unknown_implementation_lists_valid():
    with pytest.raises(ValueError, match="eager"):
        get_attention("flash-magic")


def test_registry_names_match_config_names():
    assert tuple(sorted(ATTENTION_IMPLS)) == tuple(sorted(ATTENTION_NAMES))


def test_eager_is_the_kernel_reference_in_the_input_dtype():
    """One copy of the masked-softmax math: eager == kernels/attention/reference.py, cast."""
    from medtrain.kernels.attention.reference import cross_attention_reference

    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, n, 16, generator=g).bfloat16() for n in (5, 9, 9))
    q_lens, kv_lens = torch.tensor([3, 5]), torch.tensor([0, 7])
    out = get_attention("eager")(q, k, v, q_lens=q_lens, kv_lens=kv_lens)
    ref = cross_attention_reference(q, k, v, q_lens=q_lens, kv_lens=kv_lens)
    assert out.dtype == torch.bfloat16 and ref.dtype == torch.float32
    assert torch.equal(out, ref.to(torch.bfloat16))
    assert out[0].abs().max() == 0  # no valid key: zeros
