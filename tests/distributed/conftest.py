"""Fixtures shared by the distributed tests (test_deepspeed_launch.py, test_stream_resume.py):
`deepspeed` launches on CPU ranks, free TCP ports, the client state of a saved checkpoint."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

DEEPSPEED = str(Path(sys.executable).parent / "deepspeed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client_state(run: Path, tag: str) -> dict:
    """The run-wide state medtrain saved with checkpoint `tag` of run directory `run` (JSON)."""
    import json

    return json.loads((run / "checkpoints" / tag / "medtrain" / "state.json").read_text())


@pytest.fixture(scope="session")
def deepspeed_bin() -> str:
    """Path of the `deepspeed` launcher of this interpreter's environment."""
    return DEEPSPEED


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """free_port() -> a TCP port on 127.0.0.1 that is free right now."""
    return _free_port


@pytest.fixture(scope="session")
def launch(subprocess_env) -> Callable[..., subprocess.CompletedProcess]:
    """launch(args, timeout=900, cwd=None) -> CompletedProcess of `deepspeed ARGS`, checked."""

    def _launch(
        args: list[str], timeout: int = 900, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """`deepspeed ARGS` (ranks are CPU processes), checked; in `cwd`, by default a fresh
        temporary directory (as run_cli)."""
        with tempfile.TemporaryDirectory(prefix="medtrain-cwd-") as tmp:
            proc = subprocess.run(
                [DEEPSPEED, *args],
                cwd=cwd or tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=subprocess_env({"OMP_NUM_THREADS": "1"}),
            )
        assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc

    return _launch


@pytest.fixture(scope="session")
def client_state() -> Callable[[Path, str], dict]:
    """client_state(run, tag) -> the client state medtrain saved with checkpoint `tag` of `run`."""
    return _client_state
