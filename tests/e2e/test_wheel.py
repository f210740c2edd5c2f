"""The built wheel works on its own: presets and DeepSpeed JSONs are package data.

`pip wheel` (no deps, no build isolation) from a copy of the sources, `pip install --target` into a
temporary folder, then, from an empty working directory with only that folder on PYTHONPATH:
synthetic data, a tokenizer and two pretraining steps. The run must take its preset and its
DeepSpeed JSON from the installed package, not from this checkout.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


def sh(*args: str, cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_installed_wheel_runs_synth_tokenizer_and_pretraining(tmp_path, repo_root, tiny_overrides):
    # Build from a copy: setuptools writes build/ and *.egg-info beside setup.py.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(repo_root / name, src / name)
    shutil.copytree(
        repo_root / "medtrain",
        src / "medtrain",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEDTRAIN_BUILD_EXT")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    sh(
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
        ".",
        cwd=src,
        env=env,
    )
    (wheel,) = tmp_path.glob("medtrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"medtrain/presets/tiny-cpu.yaml", "medtrain/ds_configs/cpu.json"} <= names
    assert {f"medtrain/ds_configs/zero{s}_bf16.json" for s in range(4)} <= names
    site = tmp_path / "site"
    sh(*pip, "install", "--no-deps", "--target", str(site), str(wheel), cwd=tmp_path, env=env)

    work = tmp_path / "work"  # a user's empty working directory: no ds_configs/, no presets
    work.mkdir()
    env["PYTHONPATH"] = str(site)
    medtrain = [sys.executable, "-m", "medtrain"]
    synth = ["data", "synth", "--n", "48", "--image-size", "128", "--out", "synth"]
    sh(*medtrain, *synth, cwd=work, env=env)
    tok = ["tokenizer", "train", "--root", "synth", "--vocab-size", "256", "--out", "tok"]
    sh(*medtrain, *tok, cwd=work, env=env)
    sets = tiny_overrides(
        Path("synth"),
        Path("tok"),
        Path("runs/w"),
        # fp32: CPUs without AVX512-BF16 run bf16 several times slower (packaging is the point)
        **{"train.steps": 2, "train.precision": "fp32", "data.max_eval_samples": 8},
    )
    out = sh(*medtrain, "pretrain", "--preset", "tiny-cpu", *sets, cwd=work, env=env, timeout=600)
    assert "done: 2 steps" in out
    assert (work / "runs/w/checkpoints/latest").read_text().strip() == "step2"

    # Where the run's code, preset and DeepSpeed JSON came from (the run's own config.yaml).
    where = sh(
        sys.executable,
        "-c",
        "import medtrain.config as c, medtrain.train.engine as e\n"
        "cfg = c.load_config('runs/w/config.yaml')\n"
        "print('FROM', c.__file__); print('FROM', c.PRESET_DIR / 'tiny-cpu.yaml')\n"
        "print('FROM', e.resolve_ds_config_path(cfg.train).resolve())",
        cwd=work,
        env=env,
    )
    where = [line.split(" ", 1)[1] for line in where.splitlines() if line.startswith("FROM ")]
    assert Path(where[2]).name == "cpu.json"  # tiny-cpu's train.ds_config
    for path in where:
        assert Path(path).is_file() and Path(path).is_relative_to(site), where
