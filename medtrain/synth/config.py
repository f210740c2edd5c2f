"""SynthConfig: options of `medtrain data synth` (light; each field is a CLI flag)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medtrain.synth.layouts import LAYOUT_MODULES

LAYOUTS = tuple(LAYOUT_MODULES)  # one per module in synth/layouts/
MANIFEST_FORMATS = ("jsonl", "csv")


@dataclass(kw_only=True, slots=True)
class SynthConfig:
    layout: str = field(
        default="mimic-cxr-jpg", metadata={"help": "output layout", "choices": LAYOUTS}
    )
    n: int = field(default=1000, metadata={"help": "frontal images (one per study and report)"})
    seed: int = field(default=0, metadata={"help": "output is a function of (seed, index)"})
    image_size: int = field(default=512, metadata={"help": "square image side in pixels"})
    phi_fraction: float = field(
        default=0.2, metadata={"help": "fraction of reports with injected PHI sentences"}
    )
    lateral_fraction: float = field(
        default=0.0, metadata={"help": "extra LATERAL image for this fraction of studies"}
    )
    split_fractions: tuple[float, float, float] = field(
        default=(0.8, 0.1, 0.1), metadata={"help": "train/validate/test fractions, by subject"}
    )
    manifest_format: str = field(
        default="jsonl",
        metadata={"help": "file format of layout manifest", "choices": MANIFEST_FORMATS},
    )

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.n < 1 or self.image_size < 32:
            raise ValueError(f"need n >= 1 and image_size >= 32, got {self.n}, {self.image_size}")
        if self.seed < 0:  # numpy's SeedSequence takes non-negative entropy only
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("phi_fraction", "lateral_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.manifest_format not in MANIFEST_FORMATS:
            raise ValueError(f"manifest_format must be one of {list(MANIFEST_FORMATS)}")
        fr = self.split_fractions
        finite = all(math.isfinite(x) for x in fr)  # nan passes `< 0` and `> 1e-6` silently
        if len(fr) != 3 or not finite or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be 3 non-negative values summing to 1: {fr}")
