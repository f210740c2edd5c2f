"""Local contrast normalization of [0, 1] grayscale images: CLAHE and a Gaussian-window LCN.

Gaussian LCN (subtractive then divisive, as in Jarrett et al. 2009), window G_sigma:

    v = x - G * x                 local mean removed
    y = v / sqrt(G * v^2 + eps^2) local standard deviation divided out

The numpy path (dataloader workers, OpenCV separable filter) and the batched torch path (GPU or
CPU) use the same kernel and the same reflect border (cv2.BORDER_REFLECT_101 == numpy/torch
"reflect"), so they agree to ~1e-6 in fp32. The torch path blurs with two matrix products
against a banded (n, n) matrix that holds the kernel with the reflection folded in: ~4x faster
than a 1-D convolution on the CPU and plain GEMMs on the GPU. Under TF32 matmul
(torch.backends.cuda.matmul.allow_tf32 = True) expect ~1e-3 instead.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import Tensor


def gaussian_kernel1d(sigma: float, max_radius: int) -> np.ndarray:
    """Normalized (2r+1,) float32 Gaussian, r = min(ceil(3 sigma), max_radius).

    max_radius keeps the reflect border legal (r < side): pass min(H, W) - 1.
    """
    if sigma <= 0:
        raise ValueError(f"LCN sigma must be > 0, got {sigma}")
    r = max(1, min(math.ceil(3.0 * sigma), max_radius))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_lcn_numpy(x: np.ndarray, sigma: float, eps: float) -> np.ndarray:
    """(H, W) float -> (H, W) float32 locally normalized image."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = gaussian_kernel1d(sigma, min(x.shape) - 1)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(a, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)

    v = x - blur(x)  # (H, W)
    return v / np.sqrt(blur(v * v) + eps * eps)


def reflect_band_matrix(n: int, k: np.ndarray) -> np.ndarray:
    """(n, n) M with (M @ v) == 1-D convolution of v (n,) with k under reflect padding."""
    r = (len(k) - 1) // 2
    i = np.repeat(np.arange(n), len(k))  # (n * K,) output index
    j = i + np.tile(np.arange(-r, r + 1), n)  # input index before reflection
    j = np.where(j < 0, -j, j)
    j = np.where(j > n - 1, 2 * (n - 1) - j, j)
    m = np.zeros((n, n), dtype=np.float64)
    np.add.at(m, (i, j), np.tile(k.astype(np.float64), n))
    return m.astype(np.float32)


@lru_cache(maxsize=16)
def _band(n: int, sigma: float, max_radius: int, device: torch.device) -> Tensor:
    return torch.from_numpy(reflect_band_matrix(n, gaussian_kernel1d(sigma, max_radius))).to(device)


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with reflect borders."""
    h, w = x.shape[-2:]
    limit = min(h, w) - 1
    m_h, m_w = _band(h, sigma, limit, x.device), _band(w, sigma, limit, x.device)  # (H,H) (W,W)
    return m_h @ (x @ m_w.T)  # along W, then along H


def gaussian_lcn(x: Tensor, sigma: float, eps: float) -> Tensor:
    """Batched Gaussian LCN: (B, 1, H, W) -> (B, 1, H, W), same dtype and device.

    Computed in fp32 whatever the input dtype (bf16 would lose the small local differences);
    not in place. Differentiable, though it is used as preprocessing under no_grad.
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"gaussian_lcn expects (B, 1, H, W), got {tuple(x.shape)}")
    dtype = x.dtype
    x = x.float()
    v = x - _blur(x, sigma)  # (B, 1, H, W)
    return (v * torch.rsqrt(_blur(v * v, sigma) + eps * eps)).to(dtype)


def clahe(x: np.ndarray, clip_limit: float, tiles: int) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W) float32 in [0, 1], CLAHE on 8-bit levels.

    OpenCV's clip limit is relative to the histogram bin count; on 16-bit input it spreads over
    65536 bins and no longer means the same thing, so the image is quantized to 256 levels.
    """
    u8 = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    op = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
    return op.apply(u8).astype(np.float32) / 255.0
