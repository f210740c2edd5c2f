"""Fusion strategies, chosen by name: none | cross | coattn | merged."""

from medtrain.models.fusion import coattn, cross, merged, none  # noqa: F401  (register)
from medtrain.models.fusion.base import (
    FUSIONS,
    Fusion,
    FusionConfig,
    FusionOutput,
    build_fusion,
    register_fusion,
)

__all__ = ["FUSIONS", "Fusion", "FusionConfig", "FusionOutput", "build_fusion", "register_fusion"]
