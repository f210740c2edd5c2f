"""Fixtures shared by the unit tests of the model (test_models.py, test_schedule_engine.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

TINY_VOCAB = 300


def _tiny_cfg(fusion: str = "cross"):
    """A MedVLP config small enough for CPU unit tests: 64 px Swin, 1-layer BERT, 1 fusion layer."""
    from medtrain.models.config import FusionConfig, ModelConfig, TextConfig, VisionConfig

    return ModelConfig(
        vision=VisionConfig(
            img_size=64,
            embed_dim=16,
            depths=(1, 1),
            num_heads=(2, 2),
            window_size=4,
            drop_path_rate=0.0,
        ),
        text=TextConfig(
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            intermediate_size=64,
            max_length=32,
            dropout=0.0,
        ),
        fusion=FusionConfig(name=fusion, num_layers=1, num_heads=2),
        embed_dim=24,
    )


@pytest.fixture
def tiny_cfg() -> Callable:
    """Factory: tiny_cfg(fusion="cross") -> a fresh tiny ModelConfig."""
    return _tiny_cfg


@pytest.fixture
def vocab_size() -> int:
    """Vocabulary size the tiny models are built with."""
    return TINY_VOCAB
