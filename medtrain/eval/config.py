"""Evaluation settings shared by in-training hooks and `medtrain eval` (light: no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from medtrain.data.labels import CHEXPERT_LABELS  # = eval.prompts.FINDING_PROMPTS keys (tested)


@dataclass(kw_only=True, slots=True)
class EvalConfig:
    batch_size: int = 32
    recall_at: tuple[int, ...] = (1, 5, 10)
    # Findings scored by zero-shot AUC; () means every label with both classes in the eval split.
    findings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size must be >= 1, got {self.batch_size}")
        if not self.recall_at or min(self.recall_at) < 1:
            raise ValueError(f"eval.recall_at needs ranks k >= 1, got {list(self.recall_at)}")
        if len(set(self.recall_at)) != len(self.recall_at):
            raise ValueError(f"eval.recall_at lists a rank twice: {list(self.recall_at)}")
        # An unknown name would silently score nothing (the runner filters prompts by name).
        unknown = [f for f in self.findings if f not in CHEXPERT_LABELS]
        if unknown:
            raise ValueError(
                f"eval.findings {unknown} unknown; valid: {list(CHEXPERT_LABELS)} (or [] for all)"
            )
