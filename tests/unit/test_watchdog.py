"""The hung-rank watchdog: limits from the median step, warm-up and pauses not timed; a step that
overruns dumps every thread's stack to stderr and RUN/hang-rank<r>.txt and exits with code 4."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medtrain.train.errors import RankHung
from medtrain.train.watchdog import Watchdog


def test_limit_follows_median_after_warmup_and_pauses(tmp_path: Path) -> None:
    dog = Watchdog(factor=3.0, min_s=0.5, warmup=2, dump_path=tmp_path / "hang.txt")
    assert dog.limit() is None  # warming up
    dog.beat(1)
    dog.beat(2)
    assert not dog.durations and dog.limit() == 0.5  # no timed step yet: min_s
    for step, seconds in zip((3, 4, 5), (1.0, 2.0, 10.0), strict=True):
        dog.last = time.monotonic() - seconds
        dog.beat(step)
    assert dog.limit() == pytest.approx(6.0, abs=0.01)  # 3 x median 2.0
    with dog.paused():
        assert dog.limit() is None
        dog.check(now=time.monotonic() + 1e6)  # would fire if timed: it returns
    assert time.monotonic() - dog.last < 1.0  # leaving a pause restarts the clock
    assert not Watchdog(factor=0, min_s=1, warmup=0, dump_path=tmp_path / "x").start().enabled


def test_hung_step_dumps_stacks_and_exits(tmp_path: Path) -> None:
    dump = tmp_path / "hang-rank0.txt"
    code = textwrap.dedent(
        f"""
        import threading, time
        from medtrain.train.watchdog import Watchdog

        def stuck_in_collective():
            time.sleep(30)

        dog = Watchdog(factor=2.0, min_s=0.3, warmup=1, dump_path={str(dump)!r}, poll_s=0.05)
        dog.start()
        for step in (1, 2, 3):
            time.sleep(0.02)
            dog.beat(step)
        with dog.paused():
            time.sleep(0.6)  # a checkpoint save: longer than the limit, not timed
        dog.beat(4)
        threading.Thread(target=time.sleep, args=(30,), name="loader", daemon=True).start()
        stuck_in_collective()
        """
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == RankHung.exit_code == 4, proc.stderr
    assert elapsed < 15  # not the 30 s sleep
    text = dump.read_text()
    assert text.startswith("medtrain watchdog: rank 0 step 5 has run ")
    assert "train.watchdog_min_s 0.3" in text and "exiting with code 4" in text
    assert "in stuck_in_collective" in text  # the main thread's stack
    assert text.count("hread 0x") == 3  # main, loader and the watchdog ("Current thread")
    assert "in stuck_in_collective" in proc.stderr and "medtrain watchdog: rank 0" in proc.stderr
