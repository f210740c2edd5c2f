import os
import subprocess
import sys
from pathlib import Path

import pytest

# Keep CPU tests deterministic and light on the 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton kernels run under the interpreter on CPU-only machines. It must be set before any kernel
# module is imported (triton.jit reads it at decoration time).
if not os.path.exists("/dev/nvidia0") and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_mimic(tmp_path_factory) -> Path:
    """A small synthetic MIMIC-CXR-JPG tree (128 px) shared by the integration tests."""
    from medtrain.synth.generate import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth-mimic")
    generate(SynthConfig(layout="mimic-cxr-jpg", n=240, seed=3, image_size=128), out)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(synth_mimic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    run_cli(
        "tokenizer", "train", "--root", str(synth_mimic), "--vocab-size", "512", "--out", str(out)
    )
    return out


def run_cli(*args: str, timeout: int = 900, check: bool = True, env: dict | None = None):
    """Run `python -m medtrain ARGS` in a subprocess; returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "medtrain", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"medtrain {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_overrides(data: Path, tok: Path, out: Path, **extra) -> list[str]:
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
