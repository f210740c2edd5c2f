"""Image decoding and preprocessing to the model's square input.

    decode  JPEG/PNG (8/16-bit gray, RGB by luminance) or DICOM (modality LUT, VOI LUT/window,
            MONOCHROME1 inverted) -> native array
    fit     aspect-preserving resize of the long side + zero pad ("pad"), or of the short side +
            center crop ("crop") -> (S, S) float32 in [0, 1]        == what tar shards store
    finish  local contrast (none | CLAHE | Gaussian LCN) + normalization -> (S, S) float32

`load_image` runs all three. With `lcn="gaussian", lcn_device="gpu"` workers stop after `fit`
and `batch_transform` runs the LCN on the whole batch on the training device.
Final normalization: (x - mean) / std for lcn none/clahe; Gaussian LCN output is already
locally standardized and is used as is.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from medtrain.data.config import ImageConfig
from medtrain.data.errors import DataError
from medtrain.data.lcn import clahe, gaussian_lcn, gaussian_lcn_numpy

_MODES = {"L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I": 65535.0, "RGB": 255.0}
_DICOM_SUFFIXES = (".dcm", ".dicom")
_RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


# ----------------------------------------------------------------------------------- decode


def is_dicom(path: Path, kind: str = "") -> bool:
    """By record hint, suffix, or the 'DICM' magic at byte 128 (DICOM files often lack a suffix)."""
    suffix = path.suffix.lower()
    if kind == "dicom" or suffix in _DICOM_SUFFIXES:
        return True
    if suffix in _RASTER_SUFFIXES:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise DataError(f"{path}: cannot read image file ({e})") from None
    return head[128:132] == b"DICM"


def _check_geometry(w: int, h: int, cfg: ImageConfig, name: str) -> None:
    if min(w, h) < cfg.min_side:
        raise DataError(f"{name}: image {w}x{h} is smaller than {cfg.min_side} px on a side")
    if max(w, h) / min(w, h) > cfg.max_aspect:
        raise DataError(f"{name}: image {w}x{h} has aspect ratio above {cfg.max_aspect}")


def _scale_for(w: int, h: int, size: int, fit: str) -> float:
    return size / (max(w, h) if fit == "pad" else min(w, h))


def _read_raster(path: Path, size: int, cfg: ImageConfig) -> tuple[np.ndarray, float, int]:
    """-> (H, W) uint8/uint16 array, its white value, bits. JPEGs decode at a reduced DCT scale
    (1/2, 1/4, 1/8) when that still leaves at least the output size."""
    with Image.open(path) as im:
        w, h = im.size
        _check_geometry(w, h, cfg, str(path))
        if im.format == "JPEG" and im.mode in ("L", "RGB"):
            s = _scale_for(w, h, size, cfg.fit)
            if s < 0.5:
                im.draft("L", (math.ceil(w * s), math.ceil(h * s)))
        im.load()
        if im.mode not in _MODES:
            raise DataError(
                f"{path}: unsupported image mode {im.mode!r}; expected grayscale 8/16-bit or "
                f"RGB ({sorted(_MODES)})"
            )
        if im.mode == "RGB":
            im = im.convert("L")
        arr = np.asarray(im)
    if arr.dtype == np.uint8:
        return arr, 255.0, 8
    return np.clip(arr, 0, 65535).astype(np.uint16), 65535.0, 16  # (H, W)


def _voi_output_range(ds) -> tuple[float, float]:
    """Output range of the VOI transform pydicom applied (PS3.3 C.11.2): the LUT's bit depth,
    or for a window the modality output range (pydicom's y_min, y_max)."""
    if ds.get("VOILUTSequence"):
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    return _modality_output_range(ds)


def _modality_output_range(ds) -> tuple[float, float]:
    """[0, 2^BitsStored - 1] (or the signed range) through the modality LUT / rescale."""
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.PixelRepresentation) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, icpt = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + icpt, hi * slope + icpt
    return lo, hi


def read_dicom(path: Path, no_voi: str = "full") -> tuple[np.ndarray, int]:
    """DICOM -> ((H, W) float32 in [0, 1] with white = dense, bits stored).

    Stored values -> modality LUT (RescaleSlope/Intercept or LUT) -> VOI LUT (LUT sequence
    preferred, else WindowCenter/Width) scaled by the VOI output range. Without a VOI module,
    `no_voi="full"` maps the whole modality output range ([0, 2^BitsStored - 1] rescaled) onto
    [0, 1], as a DICOM viewer would; "minmax" stretches the image's own min..max instead.
    MONOCHROME1 is inverted last.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: unreadable DICOM file ({e})") from None
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(
            f"{path}: DICOM photometric interpretation {photometric!r} is not grayscale "
            "(MONOCHROME1 / MONOCHROME2)"
        )
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no pixel data")
    try:
        stored = ds.pixel_array
    except Exception as e:  # pydicom raises RuntimeError/NotImplementedError/ValueError/...
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if syntax is not None and syntax.is_compressed:
            raise DataError(
                f"{path}: pixel data in the compressed transfer syntax {syntax.name} ({syntax}) "
                "could not be decoded: no installed pydicom pixel-data handler supports it, or "
                "the data is corrupt; install a plugin (pylibjpeg-libjpeg, pylibjpeg-openjpeg, "
                "python-gdcm) or convert the file to an uncompressed syntax "
                f"({type(e).__name__}: {e})"
            ) from None
        raise DataError(
            f"{path}: cannot decode DICOM pixel data ({type(e).__name__}: {e})"
        ) from None
    if stored.ndim != 2:
        raise DataError(f"{path}: expected one grayscale frame, got pixel array {stored.shape}")
    bits = int(ds.get("BitsStored", 16))
    x = apply_modality_lut(stored, ds)  # (H, W) float64 or int
    if ds.get("VOILUTSequence") or "WindowCenter" in ds:
        if ds.get("VOILUTSequence"):
            x = np.rint(x).astype(np.int64)  # LUT input must be integer
        x = apply_voi_lut(x, ds, prefer_lut=True)
        lo, hi = _voi_output_range(ds)
    elif no_voi == "full":
        lo, hi = sorted(_modality_output_range(ds))
    else:
        lo, hi = float(np.min(x)), float(np.max(x))
    x = np.asarray(x, dtype=np.float32)  # (H, W); in place from here (7.5 Mpx for a CXR)
    x -= np.float32(lo)
    x *= np.float32(1.0 / max(hi - lo, 1e-12))
    np.clip(x, 0.0, 1.0, out=x)
    if photometric == "MONOCHROME1":
        np.subtract(1.0, x, out=x)
    return x, bits


# -------------------------------------------------------------------------------------- fit


def fit_square(arr: np.ndarray, size: int, fit: str) -> np.ndarray:
    """(H, W) any dtype -> (size, size) same dtype: resize keeping aspect, then pad or crop.

    Area interpolation when shrinking (anti-aliased), bilinear when enlarging.
    """
    h, w = arr.shape
    if (h, w) == (size, size):
        return arr
    s = _scale_for(w, h, size, fit)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    arr = cv2.resize(arr, (nw, nh), interpolation=interp)  # (nh, nw)
    if fit == "crop":
        top, left = (nh - size) // 2, (nw - size) // 2
        return np.ascontiguousarray(arr[top : top + size, left : left + size])
    out = np.zeros((size, size), dtype=arr.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = arr
    return out


def read_fitted(
    path: str | Path, size: int, cfg: ImageConfig, kind: str = ""
) -> tuple[np.ndarray, int]:
    """Decode + fit: -> ((size, size) float32 in [0, 1], source bit depth). DataError names the
    file for anything unreadable, corrupt, truncated or of the wrong shape."""
    path = Path(path)
    try:
        if is_dicom(path, kind):
            x, bits = read_dicom(path, cfg.dicom_range)
            _check_geometry(x.shape[1], x.shape[0], cfg, str(path))
            return fit_square(x, size, cfg.fit), bits
        arr, white, bits = _read_raster(path, size, cfg)
        return fit_square(arr, size, cfg.fit).astype(np.float32) / white, bits
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, cv2.error) as e:
        raise DataError(f"{path}: unreadable or corrupt image ({e})") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large to decode safely ({e})") from None


# ----------------------------------------------------------------------------------- finish


def finish(x: np.ndarray, cfg: ImageConfig) -> np.ndarray:
    """(S, S) float32 in [0, 1] -> model input (S, S) float32 (see module docstring).

    May overwrite and return `x` itself."""
    if cfg.lcn == "gaussian":
        return x if cfg.lcn_device == "gpu" else gaussian_lcn_numpy(x, cfg.lcn_sigma, cfg.lcn_eps)
    if cfg.lcn == "clahe":
        x = clahe(x, cfg.clahe_clip, cfg.clahe_tiles)
    x -= np.float32(cfg.mean)
    x *= np.float32(1.0 / cfg.std)
    return x


def batch_transform(x: torch.Tensor, cfg: ImageConfig) -> torch.Tensor:
    """Training-device part of preprocessing for a batch (B, 1, S, S): Gaussian LCN when
    `lcn_device == "gpu"`, identity otherwise. Returns fp32."""
    x = x.float()
    return gaussian_lcn(x, cfg.lcn_sigma, cfg.lcn_eps) if cfg.lcn_on_device else x


def load_image(
    path: str | Path, size: int, cfg: ImageConfig | None = None, kind: str = ""
) -> torch.Tensor:
    """Read an image file -> float32 (1, size, size). Raises DataError naming the file."""
    cfg = cfg or ImageConfig()
    x, _ = read_fitted(path, size, cfg, kind)
    return torch.from_numpy(np.ascontiguousarray(finish(x, cfg)))[None]  # (1, S, S)


# ------------------------------------------------------------------- stored (shard) images


def encode_png(x: np.ndarray, bits: int, level: int = 1) -> bytes:
    """(S, S) float in [0, 1] -> PNG bytes, 8-bit when the source had <= 8 bits else 16-bit."""
    top, dtype = (255.0, np.uint8) if bits <= 8 else (65535.0, np.uint16)
    q = np.clip(np.rint(x * top), 0, top).astype(dtype)
    ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise DataError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes, size: int, cfg: ImageConfig, name: str = "png") -> torch.Tensor:
    """Stored 8/16-bit PNG (already fitted) -> model input (1, size, size) float32."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{name}: not a decodable 8/16-bit grayscale PNG")
    x = fit_square(arr, size, "pad").astype(np.float32)  # (S, S)
    x *= np.float32(1.0 / (255.0 if arr.dtype == np.uint8 else 65535.0))
    return torch.from_numpy(np.ascontiguousarray(finish(x, cfg)))[None]
