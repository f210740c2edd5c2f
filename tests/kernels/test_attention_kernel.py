"""Fused Triton attention kernel (medtrain.kernels.attention) against the math reference.

CPU runs use Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 when there is no
GPU). Tolerance rule (DESIGN.md section 7, flash-attention's): for each output,
max|ours - ref| <= 2 * max|torch_same_precision - ref| + atol, where ref is the reference in
higher precision (fp64 for fp32 inputs, fp32 otherwise) and torch_same_precision is the same
eager math computed in the input dtype. Every kernel output buffer is NaN-poisoned first.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from medtrain.kernels.attention import (
    CrossAttentionFunction,
    attention_flops,
    cross_attention,
    cross_attention_reference,
    triton_fwd,
    tuning,
)

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# About two roundings of a value near 0.3 in each dtype (flash-attention derives atol this way).
ATOL = {torch.float32: 1e-6, torch.float16: 2.5e-4, torch.bfloat16: 2e-3}
needs_gpu = pytest.mark.skipif(
    not CUDA, reason="needs a CUDA GPU: bf16 tensor-core path, D=128 and large shapes"
)


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Kernel output buffers start as NaN: a result that passes was written everywhere."""
    real = triton_fwd.alloc

    def nan_alloc(like, shape=None, dtype=None):
        return real(like, shape, dtype).fill_(float("nan"))

    monkeypatch.setattr(triton_fwd, "alloc", nan_alloc)


def case_generator(*case) -> torch.Generator:
    """Fresh, reproducible inputs per case (crc32: stable across processes, unlike hash)."""
    return torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))


def make_inputs(B, H, Lq, Lk, D, dtype, padding, g, device=DEVICE):
    """q/k/v/dO in `dtype` (requires grad) and lengths; padding in none | q | kv | both."""
    q, k, v = (torch.randn(B, H, n, D, generator=g) for n in (Lq, Lk, Lk))
    do = torch.randn(B, H, Lq, D, generator=g)
    q_lens = kv_lens = None
    if padding in ("q", "both"):
        q_lens = torch.randint(1, Lq + 1, (B,), generator=g)
        q_lens[-1] = max(Lq - 1, 1)  # at least one ragged sample when Lq > 1
    if padding in ("kv", "both"):
        kv_lens = torch.randint(1, Lk + 1, (B,), generator=g)
        kv_lens[0] = 0  # a sample with no valid key: all zeros
    q, k, v, do = (t.to(device=device, dtype=dtype) for t in (q, k, v, do))
    for t in (q, k, v):
        t.requires_grad_(True)
    return q, k, v, do, q_lens, kv_lens


def forward_backward(fn, q, k, v, do, **kw):
    o = fn(q, k, v, **kw)
    return (o, *torch.autograd.grad(o, (q, k, v), do.to(o.dtype)))


def reference_results(q, k, v, do, q_lens, kv_lens, compute_dtype):
    leaves = [t.detach().to(compute_dtype).requires_grad_(True) for t in (q, k, v)]

    def ref(q_, k_, v_, **kw):
        return cross_attention_reference(q_, k_, v_, compute_dtype=compute_dtype, **kw)

    return forward_backward(ref, *leaves, do.to(compute_dtype), q_lens=q_lens, kv_lens=kv_lens)


def assert_within_rule(ours, same, ref, atol, names=("out", "dq", "dk", "dv")):
    """max|ours - ref| <= 2 * max|same - ref| + atol per output, with a readable report."""
    report, ok = [], True
    for name, a, s, r in zip(names, ours, same, ref, strict=True):
        assert a.shape == r.shape, (name, a.shape, r.shape)
        err = (a.double() - r.double()).abs().max().item()
        base = (s.double() - r.double()).abs().max().item()
        good = err <= 2 * base + atol  # NaN compares False
        ok &= good
        report.append(f"{name}: ours {err:.3g} vs torch {base:.3g} (+atol {atol:g}) {good}")
    assert ok, "tolerance rule failed:\n" + "\n".join(report)


def assert_padding_exact(o, dq, dk, dv, q_lens, kv_lens):
    """Rows past q_len, keys past kv_len and samples without keys are exact zeros."""
    for b in range(o.shape[0]):
        ql = o.shape[2] if q_lens is None else int(q_lens[b])
        kl = dk.shape[2] if kv_lens is None else int(kv_lens[b])
        assert (o[b, :, ql:] == 0).all() and (dq[b, :, ql:] == 0).all()
        assert (dk[b, :, kl:] == 0).all() and (dv[b, :, kl:] == 0).all()
        if kl == 0:
            assert (o[b] == 0).all() and (dq[b] == 0).all()


def check_case(B, H, Lq, Lk, D, dtype, padding):
    g = case_generator(B, H, Lq, Lk, D, dtype, padding)
    q, k, v, do, q_lens, kv_lens = make_inputs(B, H, Lq, Lk, D, dtype, padding, g)
    ours = forward_backward(cross_attention, q, k, v, do, q_lens=q_lens, kv_lens=kv_lens)
    for t, like in zip(ours, (q, q, k, v), strict=True):
        assert t.dtype == dtype and t.shape == like.shape
        assert torch.isfinite(t).all()
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    ref = reference_results(q, k, v, do, q_lens, kv_lens, ref_dtype)
    same = reference_results(q, k, v, do, q_lens, kv_lens, dtype)
    assert_within_rule(ours, same, ref, ATOL[dtype])
    assert_padding_exact(*ours, q_lens, kv_lens)


# Lq in {1, 7, 77}, Lk in {49, 130}, D in {32, 64}; each (Lq, Lk) pair once with each D, and
# padding modes spread over them. B * H = 2 keeps the interpreter quick.
CPU_SHAPES = [  # B, H, Lq, Lk, D, padding
    (2, 1, 1, 49, 32, "kv"),
    (2, 1, 1, 130, 64, "none"),
    (2, 1, 7, 49, 64, "both"),
    (1, 2, 7, 130, 32, "q"),
    (2, 1, 77, 49, 32, "q"),
    (2, 1, 77, 130, 64, "both"),
    (2, 1, 7, 130, 32, "both"),
    (1, 2, 77, 49, 64, "none"),
    (2, 1, 1, 130, 32, "both"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("B,H,Lq,Lk,D,padding", CPU_SHAPES)
def test_matches_reference(B, H, Lq, Lk, D, padding, dtype):
    check_case(B, H, Lq, Lk, D, dtype, padding)


@pytest.mark.parametrize("D", [8, 16, 48])
def test_other_head_dims(D):
    """Head dims that are not a power of two or below tl.dot's 16 are padded and masked."""
    check_case(2, 1, 9, 21, D, torch.float32, "both")


@pytest.mark.skipif(
    CUDA, reason="interpreter-only path: bf16 upcast to fp32 under TRITON_INTERPRET"
)
def test_bf16_semantics_under_interpreter():
    """bf16 in/out through the interpreter's fp32 upcast (the GPU's bf16 dots: test_gpu_*)."""
    check_case(2, 1, 7, 49, 32, torch.bfloat16, "both")


def test_padding_content_never_read():
    """NaN in padded Q/K/V/dO positions changes nothing (not even the valid results' bits)."""
    g = case_generator("nan-padding")
    q, k, v, do, q_lens, kv_lens = make_inputs(2, 1, 40, 70, 32, torch.float32, "both", g)
    q_lens = torch.tensor([33, 5])
    kv_lens = torch.tensor([0, 37])
    clean = forward_backward(cross_attention, q, k, v, do, q_lens=q_lens, kv_lens=kv_lens)
    dirty = [t.detach().clone() for t in (q, k, v, do)]
    for b in range(2):
        for t, n in ((dirty[0], q_lens[b]), (dirty[1], kv_lens[b]), (dirty[2], kv_lens[b])):
            t[b, :, n:] = float("nan")
        dirty[3][b, :, q_lens[b] :] = float("nan")
    for t in dirty[:3]:
        t.requires_grad_(True)
    got = forward_backward(cross_attention, *dirty, q_lens=q_lens, kv_lens=kv_lens)
    for a, b in zip(got, clean, strict=True):
        assert torch.equal(a, b)


def test_strided_inputs_read_in_place():
    """(B, L, H, D) buffers viewed as (B, H, L, D), K/V as chunks of one projection."""
    g = case_generator("strided")
    B, H, Lq, Lk, D = 2, 2, 13, 37, 32
    q_buf = torch.randn(B, Lq, H * D, generator=g)
    kv_buf = torch.randn(B, Lk, 2 * H * D, generator=g)
    q = q_buf.view(B, Lq, H, D).transpose(1, 2).requires_grad_(True)  # (B, H, Lq, D) view
    k, v = (t.view(B, Lk, H, D).transpose(1, 2) for t in kv_buf.chunk(2, dim=-1))
    k, v = k.detach().requires_grad_(True), v.detach().requires_grad_(True)
    do = torch.randn(B, H, Lq, D, generator=g)
    lens = dict(q_lens=torch.tensor([13, 4]), kv_lens=torch.tensor([20, 37]))
    strided = forward_backward(cross_attention, q, k, v, do, **lens)
    dense = [t.detach().contiguous().requires_grad_(True) for t in (q, k, v)]
    packed = forward_backward(cross_attention, *dense, do, **lens)
    for a, b in zip(strided, packed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert strided[0].stride() == q.stride()  # output keeps q's layout


def test_deterministic_and_function_matches_op():
    g = case_generator("determinism")
    q, k, v, do, q_lens, kv_lens = make_inputs(2, 1, 33, 70, 32, torch.float32, "both", g)
    a = forward_backward(cross_attention, q, k, v, do, q_lens=q_lens, kv_lens=kv_lens)
    b = forward_backward(cross_attention, q, k, v, do, q_lens=q_lens, kv_lens=kv_lens)

    def via_function(q_, k_, v_):
        return CrossAttentionFunction.apply(q_, k_, v_, q_lens, kv_lens, 1 / math.sqrt(32))[0]

    c = forward_backward(via_function, q, k, v, do)
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_lse_output():
    g = case_generator("lse")
    q, k, v, _, _, _ = make_inputs(2, 1, 7, 49, 32, torch.float32, "none", g)
    q_lens, kv_lens = torch.tensor([7, 3]), torch.tensor([0, 30])
    _, lse = torch.ops.medtrain.cross_attention(q, k, v, q_lens, kv_lens, 0.125)
    s = (q[1, :, :3] @ k[1, :, :30].transpose(-1, -2)).double() * 0.125
    torch.testing.assert_close(lse[1, :, :3].double(), s.logsumexp(-1), atol=1e-5, rtol=1e-6)
    assert (lse[0] == float("-inf")).all() and (lse[1, :, 3:] == float("-inf")).all()


def test_flop_counter_counts_formula():
    from torch.utils.flop_counter import FlopCounterMode

    B, H, Lq, Lk, D = 2, 1, 7, 49, 32
    q, k, v, do, q_lens, _ = make_inputs(B, H, Lq, Lk, D, torch.float32, "q", case_generator(0))
    with FlopCounterMode(display=False) as counter:
        o = cross_attention(q, k, v, q_lens=q_lens)
        o.backward(do)
    counts = counter.get_flop_counts()["Global"]
    fwd = 4 * B * H * Lq * Lk * D
    assert attention_flops(q.shape, k.shape) == fwd
    assert counts[torch.ops.medtrain.cross_attention] == fwd
    assert counts[torch.ops.medtrain.cross_attention_backward] == 5 * fwd // 2
    assert counter.get_total_flops() == fwd + 5 * fwd // 2


def test_opcheck():
    """torch.library.opcheck: schema, fake kernel vs real outputs, autograd registration."""
    g = case_generator("opcheck")
    q, k, v, _, q_lens, kv_lens = make_inputs(2, 1, 7, 20, 16, torch.float32, "both", g)
    args = (q, k, v, q_lens, kv_lens, 0.25)
    torch.library.opcheck(torch.ops.medtrain.cross_attention.default, args)


@pytest.mark.slow  # ~20 s: inductor compiles the surrounding graph on the CPU
def test_torch_compile():
    torch._dynamo.reset()

    def f(q, k, v, q_lens):
        return (cross_attention(q * 2.0, k, v, q_lens=q_lens) + 1.0).square().sum()

    g = case_generator("compile")
    q, k, v, _, q_lens, _ = make_inputs(1, 2, 7, 49, 32, torch.float32, "q", g)
    want = f(q, k, v, q_lens)
    want_grads = torch.autograd.grad(want, (q, k, v))
    got = torch.compile(f, fullgraph=False)(q, k, v, q_lens)
    got_grads = torch.autograd.grad(got, (q, k, v))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rejects_bad_inputs():
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="mismatch"):
        cross_attention(q, torch.randn(1, 1, 5, 32), torch.randn(1, 1, 5, 32))
    with pytest.raises(TypeError, match="dtypes differ"):
        cross_attention(q, q.half(), q.half())
    with pytest.raises(TypeError, match="fp32, fp16, bf16"):
        cross_attention(q.double(), q.double(), q.double())


def test_registry_triton_on_cpu_needs_interpreter(monkeypatch):
    from medtrain.models.attention import get_attention

    q = torch.randn(1, 1, 3, 16)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="sdpa"):
        get_attention("triton")(q, q, q)
    torch.testing.assert_close(get_attention("auto")(q, q, q), get_attention("sdpa")(q, q, q))


def test_interpreter_uses_one_config():
    if not tuning.INTERPRET:
        pytest.skip("autotune spaces apply on a GPU")
    assert len(tuning.FWD_CONFIGS) == len(tuning.DKDV_CONFIGS) == len(tuning.DQ_CONFIGS) == 1


# ----------------------------------------------------------------------------- GPU only
GPU_SHAPES = [  # B, H, Lq, Lk, D, padding
    (2, 3, 77, 130, 32, "both"),
    (2, 3, 1, 49, 64, "kv"),
    (4, 2, 77, 1024, 64, "q"),
    (2, 2, 200, 257, 128, "both"),
    (8, 12, 256, 1024, 64, "q"),  # text -> image at training size
    (4, 12, 1281, 1281, 128, "both"),  # merged image + text self-attention
]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("B,H,Lq,Lk,D,padding", GPU_SHAPES)
def test_gpu_matches_reference(B, H, Lq, Lk, D, padding, dtype):
    check_case(B, H, Lq, Lk, D, dtype, padding)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("D", [32, 64, 128])
def test_gpu_fp32(D):
    check_case(2, 2, 77, 130, D, torch.float32, "both")


@pytest.mark.gpu
@needs_gpu
def test_gpu_fwd_bwd_not_slower_than_best_sdpa():
    """Text -> image at one training shape (bf16, D=64, ragged reports, 1024 image tokens):
    our forward+backward is no slower than the fastest SDPA backend (5% timing slack)."""
    import triton.testing
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from medtrain.models.attention import sdpa_attention

    B, H, Lq, Lk, D = 32, 12, 256, 1024, 64
    g = case_generator("perf")
    q, k, v, do, _, _ = make_inputs(B, H, Lq, Lk, D, torch.bfloat16, "none", g)
    q_lens = torch.randint(20, 257, (B,), generator=g).to(DEVICE)  # ragged report lengths

    def timed(fn):
        def step():
            torch.autograd.grad(fn(q, k, v, q_lens=q_lens), (q, k, v), do)

        return triton.testing.do_bench(step, warmup=25, rep=200, return_mode="median")

    ours = timed(cross_attention)
    sdpa = {}
    for backend in (
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.CUDNN_ATTENTION,
    ):
        try:
            with sdpa_kernel(backend):
                sdpa[backend.name] = timed(sdpa_attention)
        except RuntimeError:  # backend unavailable for this build / GPU
            continue
    assert sdpa, "no fused SDPA backend ran"
    best = min(sdpa, key=sdpa.get)
    assert ours <= 1.05 * sdpa[best], f"ours {ours:.3f} ms vs {best} {sdpa[best]:.3f} ms ({sdpa})"
