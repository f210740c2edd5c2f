"""Image decoding and preprocessing to the model's square input.

decode (8/16-bit grayscale, RGB converted by luminance) -> aspect-preserving resize of the long
side -> zero pad to square -> scale to [0, 1] -> (x - mean) / std. Local contrast normalization
(CLAHE, Gaussian LCN) is added by the data-pipeline work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from medtrain.data.errors import DataError

_MODES = {"L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I": 65535.0, "RGB": 255.0}


@dataclass(kw_only=True, slots=True)
class ImageConfig:
    mean: float = 0.5  # applied after scaling to [0, 1]
    std: float = 0.25
    min_side: int = 64  # smaller inputs are rejected as not a radiograph
    max_aspect: float = 3.0  # long side / short side


def load_image(path: str | Path, size: int, cfg: ImageConfig | None = None) -> torch.Tensor:
    """Read an image file -> float32 (1, size, size). Raises DataError naming the file."""
    cfg = cfg or ImageConfig()
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return preprocess(im, size, cfg, str(path))
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable or corrupt image ({e})") from None


def preprocess(im: Image.Image, size: int, cfg: ImageConfig, name: str = "image") -> torch.Tensor:
    if im.mode not in _MODES:
        raise DataError(
            f"{name}: unsupported image mode {im.mode!r}; expected grayscale 8/16-bit or RGB "
            f"({sorted(_MODES)})"
        )
    w, h = im.size
    if min(w, h) < cfg.min_side:
        raise DataError(f"{name}: image {w}x{h} is smaller than {cfg.min_side} px on a side")
    if max(w, h) / min(w, h) > cfg.max_aspect:
        raise DataError(f"{name}: image {w}x{h} has aspect ratio above {cfg.max_aspect}")
    scale_max = _MODES[im.mode]
    if im.mode == "RGB":
        im = im.convert("L")
    elif im.mode != "L":
        im = im.convert("F")  # 16-bit -> float32 values in [0, 65535]
    s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None if s > 0.5 else 2.0)
    arr = np.asarray(im, dtype=np.float32) / scale_max  # (nh, nw) in [0, 1]
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = arr
    out = (out - cfg.mean) / cfg.std
    return torch.from_numpy(out)[None]  # (1, size, size)
