"""Errors of training and checkpoints that the CLI turns into one line and an exit code (light:
no torch import, so `medtrain --help` stays fast)."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required, or one that cannot be resumed."""

    exit_code = 2


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file holds something other than tensors and allowlisted classes."""

    exit_code = 2


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row (train.max_bad_steps), or non-finite weights."""

    exit_code = 3


class RankHung(RuntimeError):
    """A step took far longer than the median step (watchdog); stacks were dumped."""

    exit_code = 4
