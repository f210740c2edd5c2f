"""Synthetic DICOM files: a uint8 phantom stored with the encodings real CR/DX exports use.

The display image a correct decoder must recover is the phantom `p` (uint8, bright = dense).
Decoding, in DICOM order (PS3.3 C.11): stored value SV (BitsStored bits, unsigned or two's
complement) -> modality LUT MV = SV * RescaleSlope + RescaleIntercept (1 / 0 when absent) ->
VOI (window or VOI LUT Sequence, never both in one file) -> 0..255 -> MONOCHROME1: 255 - value.

Below q = p for MONOCHROME2 and q = 255 - p for MONOCHROME1 (MONOCHROME1 shows low values
bright). Each decoder path gives exactly q after rounding to the nearest integer:

| variant               | photometric | bits | SV                    | slope, intercept | VOI     |
|-----------------------|-------------|------|-----------------------|------------------|---------|
| m2-u12-full           | MONOCHROME2 | 12 u | round(q * 4095 / 255) | absent           | none    |
| m1-u12-window         | MONOCHROME1 | 12 u | 16 q                  | absent           | window A|
| m2-u16-rescale-window | MONOCHROME2 | 16 u | 100 q + 700           | 2, -1024         | window B|
| m1-u16-rescale-full   | MONOCHROME1 | 16 u | 257 q                 | 0.5, 100         | none    |
| m2-u12-voilut         | MONOCHROME2 | 12 u | g(q)                  | absent           | VOI LUT |
| m2-s16-window         | MONOCHROME2 | 16 s | 40 q - 5000           | absent           | window C|

Windows (WindowCenter, WindowWidth): A (2040.5, 4081), B (25876.5, 51001), C (100.5, 10201).
- none: the full range of MV ([0, 2^BitsStored - 1] through the modality LUT) maps linearly
  onto 0..255: m2-u12-full gives SV * 255 / 4095, m1-u16-rescale-full (MV - 100) / 32767.5 * 255.
  A decoder that instead stretches the image's own min..max gets (q - min q) / (max q - min q)
  before inversion, i.e. the phantom min-max normalized (within 3e-4).
- window: MV = k q + m with WW = 255 k + 1 and WC = m + 127.5 k + 0.5, so the DICOM LINEAR
  function ((MV - (WC - 0.5)) / (WW - 1) + 0.5) * 255 equals q exactly; LINEAR_EXACT
  ((MV - WC) / WW + 0.5) * 255 is within 0.07 of q.
- VOI LUT: g(q) = round(4095 * sqrt(q / 255)) (strictly increasing, deliberately non-linear);
  LUTDescriptor [4096, 0, 16]; LUTData[x] = 257 * max{q : g(q) <= x}; display = LUT / 65535 * 255.
  A decoder that ignores the LUT and windows linearly gets a visibly wrong (sqrt-warped) image.
All files are Explicit VR Little Endian, BitsAllocated 16, HighBit = BitsStored - 1, unused high
bits zero. CR for MONOCHROME1 variants, DX otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

VARIANTS = (
    "m2-u12-full",
    "m1-u12-window",
    "m2-u16-rescale-window",
    "m1-u16-rescale-full",
    "m2-u12-voilut",
    "m2-s16-window",
)
SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
}


def uid(*parts: object) -> str:
    """Deterministic UID under the 2.25 (UUID-derived) root from `parts`."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _sqrt_code(q: np.ndarray) -> np.ndarray:
    return np.round(4095.0 * np.sqrt(q / 255.0)).astype(np.int64)


def voi_lut_data() -> np.ndarray:
    """(4096,) uint16 LUT of the m2-u12-voilut variant: 257 * max{q : g(q) <= x}."""
    codes = _sqrt_code(np.arange(256, dtype=np.float64))
    q_of_x = np.searchsorted(codes, np.arange(4096), side="right") - 1
    return (257 * q_of_x).astype(np.uint16)


def encode_pixels(p: np.ndarray, variant: str) -> tuple[np.ndarray, dict[str, object]]:
    """Stored values and pixel-module attributes for phantom `p` (uint8) in `variant`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown DICOM variant {variant!r}; valid: {VARIANTS}")
    mono1 = variant.startswith("m1")
    q = (255 - p.astype(np.int64)) if mono1 else p.astype(np.int64)
    bits, signed = (16 if "16" in variant else 12), "-s16" in variant
    tags: dict[str, object] = {
        "PhotometricInterpretation": "MONOCHROME1" if mono1 else "MONOCHROME2"
    }
    if variant == "m2-u12-full":
        sv = np.round(q * 4095 / 255).astype(np.int64)
    elif variant == "m1-u12-window":
        sv = 16 * q
        tags |= {"WindowCenter": "2040.5", "WindowWidth": "4081"}
    elif variant == "m2-u16-rescale-window":
        sv = 100 * q + 700
        tags |= {"RescaleSlope": "2", "RescaleIntercept": "-1024"}
        tags |= {"WindowCenter": "25876.5", "WindowWidth": "51001"}
    elif variant == "m1-u16-rescale-full":
        sv = 257 * q
        tags |= {"RescaleSlope": "0.5", "RescaleIntercept": "100"}
    elif variant == "m2-u12-voilut":
        sv = _sqrt_code(q.astype(np.float64))
        tags["VOILUT"] = voi_lut_data()
    else:  # m2-s16-window
        sv = 40 * q - 5000
        tags |= {"WindowCenter": "100.5", "WindowWidth": "10201"}
    tags |= {"BitsAllocated": 16, "BitsStored": bits, "HighBit": bits - 1}
    tags["PixelRepresentation"] = int(signed)
    return sv.astype(np.int16 if signed else np.uint16), tags


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    variant: str,
    modality: str,
    header: dict[str, str],
    sop_uid: str,
) -> None:
    """Write one single-frame image: `header` holds patient/study tags (names as in pydicom)."""
    stored, tags = encode_pixels(pixels, variant)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    for key, value in header.items():
        setattr(ds, key, value)
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = stored.shape
    lut = tags.pop("VOILUT", None)
    for key, value in tags.items():
        setattr(ds, key, value)
    if lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", [len(lut), 0, 16])  # LUTDescriptor
        item.add_new(0x00283006, "OW", np.asarray(lut, "<u2").tobytes())  # LUTData
        item.LUTExplanation = "SQRT"
        ds.VOILUTSequence = [item]
    dtype = "<i2" if ds.PixelRepresentation else "<u2"
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(stored, dtype).tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
