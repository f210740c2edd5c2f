"""Evaluation settings shared by in-training hooks and `medtrain eval`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True, slots=True)
class EvalConfig:
    batch_size: int = 32
    recall_at: tuple[int, ...] = (1, 5, 10)
    # Findings scored by zero-shot AUC; () means every label with both classes in the eval split.
    findings: tuple[str, ...] = ()
