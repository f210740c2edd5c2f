"""Hung-rank watchdog: a daemon thread that dumps every thread's stack and exits the rank when a
training step takes far longer than usual.

Why: a rank stuck in a collective (a peer SIGSTOPped, a dead NIC) waits for the process-group
timeout at best, silently. The loop beats after every step; after `warmup` beats (compilation,
allocator warm-up) a step that has run longer than max(factor x median step, min_s) is a hang:
the stacks go to stderr and RUN/hang-rank<r>.txt, and the process exits with RankHung's code
(os._exit: the main thread is the one that is stuck, so no exception could reach the CLI). The
launcher then ends the other ranks. Evaluation and checkpoint saves are not timed (`paused()`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from medtrain.train.errors import RankHung


class Watchdog:
    def __init__(
        self,
        *,
        factor: float,
        min_s: float,
        warmup: int,
        dump_path: Path,
        rank: int = 0,
        poll_s: float = 0.5,
        history: int = 100,
    ) -> None:
        self.factor, self.min_s, self.warmup = factor, min_s, warmup
        self.dump_path, self.rank, self.poll_s = Path(dump_path), rank, poll_s
        self.durations: deque[float] = deque(maxlen=history)  # seconds of the timed steps
        self.beats = 0
        self.step = 0
        self.last = time.monotonic()
        self._paused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def start(self) -> Watchdog:
        if self.enabled and self._thread is None:
            self.last = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="medtrain-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def beat(self, step: int) -> None:
        """A step finished: time it (once past warm-up) and restart the clock."""
        now = time.monotonic()
        with self._lock:
            if self.beats >= self.warmup and not self._paused:
                self.durations.append(now - self.last)
            self.beats += 1
            self.step, self.last = step, now

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Not timed inside (evaluation, checkpoint saves); the clock restarts on leaving."""
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                self.last = time.monotonic()

    def limit(self) -> float | None:
        """Seconds a step may run now; None while warming up."""
        with self._lock:
            if self.beats < self.warmup or self._paused:
                return None
            median = statistics.median(self.durations) if self.durations else 0.0
        return max(self.factor * median, self.min_s)

    def check(self, now: float | None = None) -> None:
        limit = self.limit()
        if limit is None:
            return
        with self._lock:
            elapsed = (now or time.monotonic()) - self.last
            median = statistics.median(self.durations) if self.durations else 0.0
        if elapsed > limit:
            self._fire(elapsed, limit, median)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def _fire(self, elapsed: float, limit: float, median: float) -> None:
        head = (
            f"medtrain watchdog: rank {self.rank} step {self.step + 1} has run {elapsed:.1f} s, "
            f"over the limit {limit:.1f} s = max(train.watchdog_factor {self.factor:g} x median "
            f"step {median:.2f} s, train.watchdog_min_s {self.min_s:g}); a rank or collective "
            f"is hung. Stacks of every thread below and in {self.dump_path}; exiting with code "
            f"{RankHung.exit_code}\n"
        )
        sys.stderr.write(head)
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        try:
            self.dump_path.parent.mkdir(parents=True, exist_ok=True)
            with self.dump_path.open("w") as f:
                f.write(head)
                f.flush()
                faulthandler.dump_traceback(file=f, all_threads=True)
        finally:
            sys.stderr.flush()
            os._exit(RankHung.exit_code)
