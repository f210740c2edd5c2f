"""Lazy loader of the native extension in csrc/ (ops under `torch.ops.medtrain`).

Nothing is compiled or loaded at import. The first `load()` tries, in order:
  1. the prebuilt module `medtrain._C` (built by `MEDTRAIN_BUILD_EXT=1 pip install -e .`);
  2. a JIT build of the csrc/ sources with `torch.utils.cpp_extension.load` (ninja) into torch's
     extension cache (`TORCH_EXTENSIONS_DIR`, default ~/.cache/torch_extensions). The build is
     CPU-only unless both nvcc and a GPU are present; it takes about a minute on a small machine
     and later processes reuse it.
On failure `load()` returns None and warns once per process; callers fall back to their PyTorch
references.

Environment:
  MEDTRAIN_EXT=0         never load the extension (forces the references; no warning)
  MEDTRAIN_EXT=prebuilt  only the prebuilt module, never JIT-build
  MEDTRAIN_EXT=jit       skip the prebuilt module
  MEDTRAIN_EXT_VERBOSE=1 show the compiler output of a JIT build
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

ENV = "MEDTRAIN_EXT"
CSRC = Path(__file__).resolve().parents[2] / "csrc"
_SOURCES = ("bindings.cpp", "contrastive/contrastive.cpp")
_CUDA_SOURCES = ("contrastive/contrastive_cuda.cu",)
# -fno-trapping-math lets GCC turn the clamps in the CPU epilogue into vector selects.
CFLAGS = ["-O3", "-fopenmp", "-fno-trapping-math"]
LDFLAGS = ["-fopenmp"]


@dataclass(frozen=True, slots=True)
class Extension:
    """A loaded extension: how it was obtained, whether it has CUDA kernels, its file."""

    source: str  # "prebuilt" | "jit"
    with_cuda: bool
    path: str


_lock = threading.Lock()
_done = False
_ext: Extension | None = None
_error: str | None = None
_warned = False


def mode() -> str:
    """The MEDTRAIN_EXT setting: "auto" (default), "0", "prebuilt" or "jit"."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value in ("0", "off", "false", "no"):
        return "0"
    if value not in ("auto", "prebuilt", "jit", "1", "on"):
        raise ValueError(f"{ENV}={value!r}; valid: auto, 0, prebuilt, jit")
    return "auto" if value in ("1", "on") else value


def cuda_home() -> Path | None:
    """CUDA toolkit root with bin/nvcc and include/cuda_runtime.h: CUDA_HOME / CUDA_PATH, then
    /usr/local/cuda, then nvcc's install on PATH (wrappers there are not a toolkit root)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parents[1]))
    for home in filter(None, candidates):
        root = Path(home)
        if (root / "bin" / "nvcc").exists() and (root / "include" / "cuda_runtime.h").exists():
            return root
    return None


def _built_with_cuda() -> bool:
    return bool(torch.ops.medtrain.contrastive_built_with_cuda())


def _load_prebuilt() -> Extension:
    mod = importlib.import_module("medtrain._C")  # registers the ops on import
    return Extension("prebuilt", _built_with_cuda(), str(mod.__file__))


def _load_jit(verbose: bool) -> Extension:
    missing = [s for s in (*_SOURCES, *_CUDA_SOURCES) if not (CSRC / s).exists()]
    if missing:
        raise FileNotFoundError(f"csrc sources not found under {CSRC}: {missing}")
    home = cuda_home()
    with_cuda = torch.cuda.is_available() and home is not None
    if with_cuda:  # torch guesses CUDA_HOME from nvcc on PATH, which may be a wrapper
        os.environ.setdefault("CUDA_HOME", str(home))
    # cpp_extension logs a CUDA_HOME guess at import; irrelevant for a CPU-only build.
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    if not with_cuda:
        log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        log.setLevel(level)
    sources = [str(CSRC / s) for s in _SOURCES]
    cflags = list(CFLAGS)
    if with_cuda:
        sources += [str(CSRC / s) for s in _CUDA_SOURCES]
        cflags.append("-DMEDTRAIN_WITH_CUDA")
    path = cpp_extension.load(
        name="medtrain_C_cuda" if with_cuda else "medtrain_C",
        sources=sources,
        extra_cflags=cflags,
        extra_cuda_cflags=["-O3"],
        extra_ldflags=LDFLAGS,
        extra_include_paths=[str(CSRC)],
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    return Extension("jit", _built_with_cuda(), str(path))


def _summarize(exc: BaseException, lines: int = 12) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def _try_load() -> tuple[Extension | None, str | None]:
    how = mode()
    if how == "0":
        return None, f"disabled by {ENV}=0"
    errors = []
    if how in ("auto", "prebuilt"):
        try:
            return _load_prebuilt(), None
        except Exception as exc:  # ImportError when not built; OSError on ABI mismatch
            errors.append(f"prebuilt medtrain._C: {_summarize(exc, 3)}")
    if how in ("auto", "jit"):
        try:
            return _load_jit(os.environ.get("MEDTRAIN_EXT_VERBOSE") == "1"), None
        except Exception as exc:  # compiler missing or failing, sources absent, ...
            errors.append(f"JIT build: {_summarize(exc)}")
    return None, "; ".join(errors)


def load(*, warn: bool = True) -> Extension | None:
    """The loaded extension, or None (with one warning per process unless warn=False)."""
    global _done, _ext, _error, _warned
    with _lock:
        if not _done:
            _ext, _error = _try_load()
            _done = True
        if _ext is None and warn and not _warned and mode() != "0":
            _warned = True
            warnings.warn(
                f"medtrain native extension unavailable ({_error}); native kernels fall back "
                f"to their PyTorch references. Set {ENV}=0 to skip it.",
                RuntimeWarning,
                stacklevel=2,
            )
    return _ext


def load_error() -> str | None:
    """Why the last load() failed (None if it succeeded or was not attempted)."""
    return _error
