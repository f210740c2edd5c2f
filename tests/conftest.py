import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# Keep CPU tests deterministic and light on the 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton kernels run under the interpreter on CPU-only machines. It must be set before any kernel
# module is imported (triton.jit reads it at decoration time).
if not os.path.exists("/dev/nvidia0") and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"

_REPO = Path(__file__).resolve().parents[1]
# What init_distributed() exports for a 1-process group; a subprocess must never inherit these
# from the pytest process (it would try to host the rendezvous on a port this process holds).
_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module", autouse=True)
def _no_process_group_leaks_between_modules():
    """In-process training (pretrain()/finetune() called from a test) makes a 1-process group
    and exports RANK/MASTER_PORT; end it and restore the environment after each module."""
    saved = {k: os.environ.get(k) for k in _DIST_ENV}
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def synth_mimic(tmp_path_factory) -> Path:
    """A small synthetic MIMIC-CXR-JPG tree (128 px) shared by the integration tests."""
    from medtrain.synth.config import SynthConfig
    from medtrain.synth.generate import generate

    out = tmp_path_factory.mktemp("synth-mimic")
    generate(SynthConfig(layout="mimic-cxr-jpg", n=240, seed=3, image_size=128), out)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(synth_mimic, tmp_path_factory, run_cli) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    run_cli(
        "tokenizer", "train", "--root", str(synth_mimic), "--vocab-size", "512", "--out", str(out)
    )
    return out


# ------------------------------------------------------------ subprocess helpers
# Plain functions (underscored) behind session-scoped fixtures of the same name without the
# underscore: test modules request the fixtures instead of importing this module.


def _subprocess_env(env: dict | None = None) -> dict[str, str]:
    """os.environ with this checkout first on PYTHONPATH (plus `env`) for medtrain subprocesses."""
    path = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p)
    inherited = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    return {**inherited, "PYTHONPATH": path, **(env or {})}


def _run_cli(
    *args: str,
    timeout: int = 900,
    check: bool = True,
    env: dict | None = None,
    cwd: Path | None = None,
):
    """Run `python -m medtrain ARGS` in a subprocess; returns the CompletedProcess.

    It runs in `cwd`, by default a fresh temporary directory, so that relative defaults
    (train.out_dir runs/..., data.root data/...) never meet the checkout's runs/ or data/.
    """
    with tempfile.TemporaryDirectory(prefix="medtrain-cwd-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "medtrain", *args],
            cwd=cwd or tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_subprocess_env(env),
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"medtrain {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _tiny_overrides(data: Path, tok: Path, out: Path, **extra) -> list[str]:
    """--set arguments for a fast tiny-cpu run on the fixture data."""
    values = {
        "data.root": data,
        "tokenizer.path": tok,
        "train.out_dir": out,
        "data.num_workers": 0,
        "data.max_eval_samples": 48,
        "train.micro_batch_size": 8,
        "train.log_every": 1,
        "model.vision.depths": "[1,1]",
        "model.vision.num_heads": "[2,4]",
    } | extra
    args = []
    for k, v in values.items():
        args += ["--set", f"{k}={v}"]
    return args


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory (the one holding medtrain/ and tests/)."""
    return _REPO


@pytest.fixture(scope="session")
def subprocess_env() -> Callable[..., dict[str, str]]:
    """subprocess_env(env=None) -> os.environ with this checkout first on PYTHONPATH, plus env."""
    return _subprocess_env


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """run_cli(*args, timeout=900, check=True, env=None, cwd=None) -> CompletedProcess of
    `python -m medtrain ARGS`, by default in a fresh temporary working directory."""
    return _run_cli


@pytest.fixture(scope="session")
def tiny_overrides() -> Callable[..., list[str]]:
    """tiny_overrides(data, tok, out, **extra) -> --set arguments for a fast tiny-cpu run."""
    return _tiny_overrides


# ------------------------------------------------------------ contrastive loss cases
# Shared by tests/unit/test_contrastive_reference.py and tests/kernels/test_contrastive_fused.py
# through the fixtures below (spawned workers receive the functions as arguments).


def _make_clip_inputs(n: int, dim: int, seed: int):
    """(image (n, dim), text (n, dim)) L2-normalized, and a logit scale () in [5, 50)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    txt = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    return img, txt, 5 + 45 * torch.rand((), generator=g)


def _clip_truth(img, txt, scale):
    """float64 symmetric InfoNCE over the full (n, n) matrix: (loss, d_img, d_txt, d_scale)."""
    import torch
    import torch.nn.functional as F

    leaves = [t.detach().double().requires_grad_() for t in (img, txt, scale)]
    logits = leaves[2] * leaves[0] @ leaves[1].T  # (n, n)
    labels = torch.arange(logits.shape[0])
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return (loss.detach(), *torch.autograd.grad(loss, leaves))


@pytest.fixture(scope="session")
def clip_inputs():
    """clip_inputs(n, dim, seed) -> (img, txt, scale)."""
    return _make_clip_inputs


@pytest.fixture(scope="session")
def clip_full_grads():
    """clip_full_grads(img, txt, scale) -> float64 (loss, d_img, d_txt, d_scale)."""
    return _clip_truth
