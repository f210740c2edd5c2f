"""Fused contrastive loss (LSE exchange) vs the materialized reference: every CPU backend
(cpp extension; triton under TRITON_INTERPRET=1), 1-3 gloo processes, odd sizes, value and all
gradients; tile primitives at ragged edges; dispatch wiring; memory; CUDA sources build."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medtrain.kernels.contrastive import fused_contrastive_loss, get_backend, unavailable_reason
from medtrain.kernels.contrastive.reference import contrastive_loss_reference
from medtrain.losses import contrastive_loss, resolve_contrastive_impl

# clip_inputs(n, dim, seed) and clip_full_grads(img, txt, scale) (float64 full-matrix truth)
# are fixtures of tests/conftest.py.

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("cpp", "triton")
# Other tile shapes than the defaults (cpp: tiny, so few columns span several ragged tiles;
# triton: the interpreter's default is 16 x 16 already).
OTHER_TILES = {"cpp": {"block_n": 3}, "triton": {"block_m": 32, "block_n": 16}}


def backend_or_skip(name: str, **options):
    reason = unavailable_reason(name, "cpu")
    if reason is not None:
        pytest.skip(f"{name} backend unavailable on CPU: {reason}")
    return get_backend(name, **options)


def assert_kernel_close(name: str, ours, ref, truth, rel_atol: float = 1e-5) -> None:
    """DESIGN.md tolerance: |ours - truth| <= 2 |ref - truth| + atol, atol = rel_atol * max(1,
    max |truth|) (a loss of 0 is still a difference of O(s) terms).

    ours: fused result; ref: the fp32 reference on the same inputs; truth: float64.
    """
    ours, ref, truth = ours.double(), ref.double(), truth.double()
    assert ours.shape == truth.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(truth.shape)}"
    atol = rel_atol * max(truth.abs().max().item(), 1.0)
    err = (ours - truth).abs()
    bound = 2 * (ref - truth).abs() + atol
    bad = err > bound
    if bad.any():
        i = int((err - bound).argmax())
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{err.numel()} elements out of tolerance; worst at flat "
            f"index {i}: ours={ours.flatten()[i].item():.8g} truth={truth.flatten()[i].item():.8g}"
            f" ref={ref.flatten()[i].item():.8g} (|err|={err.flatten()[i].item():.3g} > "
            f"bound={bound.flatten()[i].item():.3g}); max |err|={err.max().item():.3g}"
        )


def run_loss(fn, img, txt, scale):
    leaves = [t.clone().requires_grad_() for t in (img, txt, scale)]
    loss = fn(*leaves)
    loss.backward()
    return loss.detach(), *(leaf.grad for leaf in leaves)


# ------------------------------------------------------------ single process

OUTPUTS = ("loss", "d_image", "d_text", "d_scale")
SHAPES = [(1, 5), (7, 16), (33, 20), (64, 96)]  # (B, E): odd, ragged against every tile size


@pytest.mark.parametrize("tiles", ["default", "other"])
@pytest.mark.parametrize(("n", "dim"), SHAPES)
@pytest.mark.parametrize("name", BACKENDS)
def test_single_process_matches_reference(name, n, dim, tiles, clip_inputs, clip_full_grads):
    backend = backend_or_skip(name, **(OTHER_TILES[name] if tiles == "other" else {}))
    img, txt, scale = clip_inputs(n, dim, seed=7 * n + dim)
    ours = run_loss(lambda *a: fused_contrastive_loss(*a, backend=backend), img, txt, scale)
    ref = run_loss(contrastive_loss_reference, img, txt, scale)
    truth = clip_full_grads(img, txt, scale)
    assert ours[0].dtype == torch.float32 and ours[0].ndim == 0
    for what, o, r, t in zip(OUTPUTS, ours, ref, truth, strict=True):
        assert_kernel_close(f"{name}/{what}", o, r, t)


@pytest.mark.parametrize("name", BACKENDS)
def test_low_precision_inputs(name: str, clip_inputs, clip_full_grads) -> None:
    backend = backend_or_skip(name)
    img, txt, scale = clip_inputs(19, 24, seed=5)
    img, txt = img.bfloat16(), txt.bfloat16()
    scale_1 = scale.reshape(1)  # a (1,)-shaped parameter works too
    ours = run_loss(lambda *a: fused_contrastive_loss(*a, backend=backend), img, txt, scale_1)
    ref = run_loss(contrastive_loss_reference, img, txt, scale_1)
    truth = clip_full_grads(img.float(), txt.float(), scale_1)
    assert [t.dtype for t in ours] == [torch.float32, torch.bfloat16, torch.bfloat16, torch.float32]
    assert ours[3].shape == (1,)
    for what, o, r, t in zip(OUTPUTS, ours, ref, truth, strict=True):
        # Gradients are rounded to bf16 on both sides: allow one bf16 step of the largest one.
        assert_kernel_close(f"{name}/{what}", o, r, t.reshape(o.shape), rel_atol=2**-8)


@pytest.mark.parametrize("name", BACKENDS)
def test_tile_primitives_ragged(name: str) -> None:
    """Both primitives against their definitions at ragged sizes; Triton outputs are poisoned
    first so an unwritten element shows up as NaN."""
    backend = backend_or_skip(name, **OTHER_TILES[name])
    g = torch.Generator().manual_seed(3)
    n, m, d, offset = 13, 37, 21, 17  # positives of rows 0..12 are columns 17..29
    q, k = torch.randn(n, d, generator=g) / 3, torch.randn(m, d, generator=g) / 3
    scale = torch.tensor(4.0)
    x = scale * q.double() @ k.double().T  # (n, m)
    lse_q, lse_k = x.logsumexp(1), torch.randn(m, generator=g, dtype=torch.float64) + 4
    delta = torch.zeros(n, m, dtype=torch.float64)
    delta[torch.arange(n), offset + torch.arange(n)] = 1
    p = (x - lse_q[:, None]).exp()
    g_ij = p + (x - lse_k[None, :]).exp() - 2 * delta
    want_dq = g_ij @ k.double()  # (n, d)
    want_ds = ((p - delta) * (q.double() @ k.double().T)).sum(1)  # (n,)

    kwargs = {}
    if name == "triton":
        kwargs = {"out": torch.full((n,), float("nan"))}
    lse = backend.lse_rows(q, k, scale, **kwargs)
    if name == "triton":
        kwargs = {"out": (torch.full((n, d), float("nan")), torch.full((n,), float("nan")))}
    dq, ds = backend.grad_rows(q, k, scale, lse_q.float(), lse_k.float(), offset, **kwargs)
    torch.testing.assert_close(lse.double(), lse_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dq.double(), want_dq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ds.double(), want_ds, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ multi-process (gloo)

CASES = [(1, 4, 11), (3, 8, 12), (5, 16, 13)]  # (local batch b, dim, seed)


def _rank_worker(rank, world, init_file: str, out_dir: str, names: list[str], make_inputs) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    try:
        results = {}
        for name in ["reference", *names]:
            for c, (b, dim, seed) in enumerate(CASES):
                img, txt, scale = make_inputs(world * b, dim, seed)  # same global batch everywhere
                sl = slice(rank * b, (rank + 1) * b)
                fn = lambda *a, name=name: contrastive_loss(*a, impl=name)  # default group
                loss, gi, gt, gs = run_loss(fn, img[sl], txt[sl], scale)
                results[f"{name}/{c}"] = {"loss": loss, "gi": gi, "gt": gt, "gs": gs}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears down gloo while a peer is still receiving
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3])
def test_multi_process_matches_reference(world, tmp_path, clip_inputs, clip_full_grads) -> None:
    names = [n for n in BACKENDS if unavailable_reason(n, "cpu") is None]
    if not names:
        pytest.skip("no fused backend available on CPU")
    mp.spawn(
        _rank_worker,
        args=(world, str(tmp_path / "store"), str(tmp_path), names, clip_inputs),
        nprocs=world,
        join=True,
    )
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for c, (b, dim, seed) in enumerate(CASES):
        t_loss, t_gi, t_gt, t_gs = clip_full_grads(*clip_inputs(world * b, dim, seed))
        for name in names:
            ref_gs_mean = torch.stack([per_rank[r][f"reference/{c}"]["gs"] for r in range(world)])
            gs_mean = torch.stack([per_rank[r][f"{name}/{c}"]["gs"] for r in range(world)])
            assert_kernel_close(f"{name}/gs-mean", gs_mean.mean(), ref_gs_mean.mean(), t_gs)
            for r in range(world):
                ours, ref = per_rank[r][f"{name}/{c}"], per_rank[r][f"reference/{c}"]
                sl = slice(r * b, (r + 1) * b)
                tag = f"{name}/world{world}/rank{r}/case{c}"
                assert_kernel_close(f"{tag}/loss", ours["loss"], ref["loss"], t_loss)
                # open_clip per-rank gradient == world * d(global)/d(local slice).
                assert_kernel_close(f"{tag}/gi", ours["gi"], ref["gi"], world * t_gi[sl])
                assert_kernel_close(f"{tag}/gt", ours["gt"], ref["gt"], world * t_gt[sl])
                # Per-rank logit-scale gradient: open_clip's own (the reference's) per rank.
                torch.testing.assert_close(ours["gs"], ref["gs"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ dispatch wiring


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_import_is_lazy() -> None:
    _python(
        """
        import sys
        import medtrain.losses
        from medtrain.kernels import native
        assert "triton" not in sys.modules, "importing medtrain.losses imported triton"
        assert not native._done, "importing medtrain.losses loaded the extension"
        from medtrain.losses import contrastive_loss, resolve_contrastive_impl
        import medtrain.kernels.contrastive, medtrain.kernels.attention, medtrain.models.attention
        assert "triton" not in sys.modules, "importing the registries imported triton"
        assert not native._done, "importing the registries loaded the extension"
        """
    )


def test_env_forces_reference(monkeypatch) -> None:
    monkeypatch.setenv("MEDTRAIN_CONTRASTIVE_IMPL", "reference")
    assert resolve_contrastive_impl("auto", "cpu") == "reference"
    assert resolve_contrastive_impl("auto", "cuda") == "reference"
    monkeypatch.setenv("MEDTRAIN_CONTRASTIVE_IMPL", "nope")
    with pytest.raises(ValueError, match="valid: auto, cpp, reference, triton"):
        resolve_contrastive_impl("auto", "cpu")


def test_auto_prefers_cpp_on_cpu(monkeypatch) -> None:
    monkeypatch.delenv("MEDTRAIN_CONTRASTIVE_IMPL", raising=False)
    backend_or_skip("cpp")
    assert resolve_contrastive_impl("auto", "cpu") == "cpp"


@pytest.mark.parametrize("cause", ["disabled", "no-compiler"])
def test_missing_extension_falls_back_with_one_warning(cause: str, tmp_path: Path) -> None:
    env = {"MEDTRAIN_CONTRASTIVE_IMPL": "auto"}
    if cause == "disabled":
        env["MEDTRAIN_EXT"] = "0"
        expect = "MEDTRAIN_EXT=0"
    else:  # a JIT build into an empty cache with a compiler that does not exist
        env.update(MEDTRAIN_EXT="jit", TORCH_EXTENSIONS_DIR=str(tmp_path), CXX="/nonexistent/c++")
        expect = "JIT build"
    _python(
        f"""
        import warnings
        import torch
        from medtrain.losses import contrastive_loss, resolve_contrastive_impl
        img, txt = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
        scale = torch.tensor(10.0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert resolve_contrastive_impl("auto", "cpu") == "reference"
                contrastive_loss(img, txt, scale)
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(msgs) == 1, msgs
        assert {expect!r} in msgs[0] and "reference" in msgs[0], msgs[0]
        try:
            contrastive_loss(img, txt, scale, impl="cpp")
        except RuntimeError as exc:
            assert "unavailable" in str(exc)
        else:
            raise AssertionError("explicit impl='cpp' without the extension must raise")
        """,
        **env,
    )


# ------------------------------------------------------------ memory


MEMORY_SCRIPT = """
import os, resource, torch, torch.nn.functional as F
from medtrain.kernels.contrastive import fused_contrastive_loss, get_backend

def rss_mb():  # current resident set; resets the peak (VmHWM) where permitted
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

def peak_mb():
    with open("/proc/self/status") as f:
        hwm = [line for line in f if line.startswith("VmHWM:")]
    if hwm:
        return int(hwm[0].split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux

n, dim, backward = (int(os.environ[k]) for k in ("MEM_N", "MEM_DIM", "MEM_BACKWARD"))
torch.manual_seed(0)
backend = get_backend("cpp")
warm = [F.normalize(torch.randn(8, dim), dim=-1).requires_grad_() for _ in range(2)]
fused_contrastive_loss(*warm, torch.tensor(10.0), backend=backend).backward()
img = F.normalize(torch.randn(n, dim), dim=-1).requires_grad_()  # (B, E)
txt = F.normalize(torch.randn(n, dim), dim=-1).requires_grad_()  # (B, E)
scale = torch.tensor(20.0, requires_grad=True)
base = rss_mb()
loss = fused_contrastive_loss(img, txt, scale, backend=backend)
if backward:
    loss.backward()
print(peak_mb() - base, loss.item())
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n", "dim", "backward", "limit_mb"),
    [
        (65536, 64, False, 1024),  # a b x B fp32 matrix would be 16 GiB
        (16384, 64, True, 256),  # 1 GiB per b x B matrix; grads alone are 8 MiB
    ],
)
def test_peak_memory_is_not_b_by_B(n: int, dim: int, backward: bool, limit_mb: int) -> None:
    backend_or_skip("cpp")
    env = {"MEM_N": str(n), "MEM_DIM": str(dim), "MEM_BACKWARD": str(int(backward))}
    out = _python(MEMORY_SCRIPT, **env).stdout.split()
    extra_mb, loss = float(out[0]), float(out[1])
    assert loss == loss and loss > 0
    print(f"B={n} d={dim} backward={backward}: peak extra RSS {extra_mb:.0f} MiB")
    assert extra_mb < limit_mb, f"peak extra RSS {extra_mb:.0f} MiB >= {limit_mb} MiB"


# ------------------------------------------------------------ CUDA sources build (no GPU needed)


@pytest.mark.slow
def test_cuda_sources_compile_for_sm90(tmp_path: Path) -> None:
    from medtrain.kernels.native import CSRC, cuda_home

    home = cuda_home()
    if home is None:
        pytest.skip("no CUDA toolkit (nvcc + headers) found; set CUDA_HOME")
    nvcc = str(home / "bin" / "nvcc")
    subprocess.run(
        [nvcc, "-c", str(CSRC / "contrastive/contrastive_cuda.cu"), "-o", str(tmp_path / "k.o"),
         "-gencode", "arch=compute_90,code=sm_90", "-O3", "-std=c++17", f"-I{CSRC}"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (tmp_path / "k.o").stat().st_size > 0
    # The ATen glue of the CUDA build (MEDTRAIN_WITH_CUDA) type-checks against CUDA headers.
    from torch.utils.cpp_extension import include_paths

    incs = [*include_paths(), str(home / "include"), sysconfig.get_paths()["include"]]
    cmd = ["c++", "-fsyntax-only", "-std=c++20", "-DMEDTRAIN_WITH_CUDA", f"-I{CSRC}"]
    cmd += [f"-isystem{p}" for p in incs]
    for src in ("contrastive/contrastive.cpp", "bindings.cpp"):
        proc = subprocess.run([*cmd, str(CSRC / src)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
