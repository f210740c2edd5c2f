"""Data configuration (light: dataclasses only; no torch, OpenCV, tokenizers or transformers).

DataConfig (the `data` section) nests ImageConfig (`data.image`) and DeidConfig (`data.deid`);
MaskingConfig (`masking`) and TokenizerConfig (`tokenizer`) are run sections of their own;
ShardConfig holds `medtrain data prepare`'s options (its CLI flags are generated from it).
Each check lives in the `__post_init__` of the dataclass that owns the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("records", "shards")
SPLITS = ("train", "validate", "test")
FITS = ("pad", "crop")
LCNS = ("none", "clahe", "gaussian")
LCN_DEVICES = ("worker", "gpu")
ON_BAD_IMAGE = ("skip", "error")
# Opt-in decodings of report bytes that are not valid UTF-8 (data.text_fallback_encoding).
TEXT_FALLBACK_ENCODINGS = ("", "cp1252", "latin-1")
PHI_KINDS = ("NAME", "DATE", "TIME", "AGE", "ID", "PHONE", "EMAIL", "URL", "ADDRESS", "HOSPITAL")
DEID_BACKENDS = ("rules",)


def _finite(where: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value}")


@dataclass(kw_only=True, slots=True)
class ImageConfig:
    mean: float = 0.5  # applied after scaling to [0, 1] (lcn none / clahe)
    std: float = 0.25
    min_side: int = 64  # smaller inputs are rejected as not a radiograph
    max_aspect: float = 3.0  # long side / short side
    fit: str = "pad"  # pad: whole image, zero borders | crop: fill the square, cut the long side
    lcn: str = "none"  # none | clahe | gaussian
    lcn_device: str = "worker"  # where Gaussian LCN runs: worker (numpy) | gpu (on the batch)
    lcn_sigma: float = 8.0  # Gaussian window sigma in output pixels
    lcn_eps: float = 0.01  # in [0, 1] intensity units; caps the gain in flat regions at 1/eps
    clahe_clip: float = 2.0  # OpenCV clip limit
    clahe_tiles: int = 8  # tiles per side
    dicom_range: str = "full"  # DICOM without VOI: full (stored bit range) | minmax (image's own)

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("fit", self.fit, FITS),
            ("lcn", self.lcn, LCNS),
            ("lcn_device", self.lcn_device, LCN_DEVICES),
            ("dicom_range", self.dicom_range, ("full", "minmax")),
        ):
            if value not in valid:
                raise ValueError(f"image.{name} must be one of {list(valid)}, got {value!r}")
        for name in ("mean", "std", "max_aspect", "lcn_sigma", "lcn_eps", "clahe_clip"):
            _finite(f"image.{name}", getattr(self, name))
        if self.lcn_device == "gpu" and self.lcn != "gaussian":
            raise ValueError("image.lcn_device=gpu needs image.lcn=gaussian (CLAHE is CPU-only)")
        if self.lcn_sigma <= 0 or self.lcn_eps <= 0 or self.std <= 0:
            raise ValueError("image.lcn_sigma, image.lcn_eps and image.std must be > 0")
        if self.clahe_clip <= 0 or self.clahe_tiles < 1:
            raise ValueError("image.clahe_clip must be > 0 and image.clahe_tiles >= 1")
        if self.min_side < 1 or self.max_aspect < 1:
            raise ValueError("image.min_side must be >= 1 and image.max_aspect >= 1")
        if self.lcn_eps > 1:
            raise ValueError(f"image.lcn_eps must be in (0, 1], got {self.lcn_eps}")

    @property
    def lcn_on_device(self) -> bool:
        return self.lcn == "gaussian" and self.lcn_device == "gpu"


@dataclass(kw_only=True, slots=True)
class DeidConfig:
    """De-identification of report text on the one text path (medtrain/data/text.py).

    enabled: false only for sources de-identified at the source (logged once per run);
    backend: the de-identifier (rules: medtrain/data/deid.py); kinds: PHI kinds to scrub.
    """

    enabled: bool = True
    backend: str = "rules"
    kinds: tuple[str, ...] = PHI_KINDS

    def __post_init__(self) -> None:
        if self.backend not in DEID_BACKENDS:
            raise ValueError(
                f"data.deid.backend must be one of {list(DEID_BACKENDS)}, got {self.backend!r}"
            )
        unknown = sorted(set(self.kinds) - set(PHI_KINDS))
        if unknown:
            raise ValueError(f"unknown PHI kinds {unknown}; valid: {', '.join(PHI_KINDS)}")


@dataclass(kw_only=True, slots=True)
class DataConfig:
    source: str = "mimic-cxr-jpg"  # reader name, see medtrain.data.sources.SOURCES
    root: str = "data/synth-mimic"
    reports_root: str = ""  # MIMIC-CXR reports tree kept apart from the JPG tree ("" = search)
    images_root: str = ""  # Open-I PNG folder kept apart from the XML ("" = search)
    views: tuple[str, ...] = ("PA", "AP")  # MIMIC ViewPosition filter; () keeps all views
    train_split: str = "train"
    eval_split: str = "validate"
    max_eval_samples: int = 512  # pretraining's periodic eval; fine-tuning scores its whole split
    num_workers: int = 2
    on_bad_image: str = "skip"  # skip (log and substitute another sample) | error
    image: ImageConfig = field(default_factory=ImageConfig)
    deid: DeidConfig = field(default_factory=DeidConfig)
    format: str = "records"  # records: index data.root in RAM | shards: stream data.shards
    shards: str = ""  # train shard directory (`medtrain data prepare --out DIR`)
    eval_shards: str = ""  # evaluate from this shard directory instead of data.root's eval split
    shuffle_buffer: int = 256  # within-shard shuffle buffer of the streaming loader (samples)
    # Report bytes that are not valid UTF-8: "" quarantines the record (never replacement
    # characters: they can defeat de-identification); cp1252 / latin-1 decode them in the
    # reader, before de-identification.
    text_fallback_encoding: str = ""
    verify_shards: bool = True  # sha256 of each shard checked against the manifest on first open

    def __post_init__(self) -> None:
        if self.text_fallback_encoding not in TEXT_FALLBACK_ENCODINGS:
            raise ValueError(
                f"data.text_fallback_encoding must be one of {list(TEXT_FALLBACK_ENCODINGS)}, "
                f"got {self.text_fallback_encoding!r}"
            )
        if self.format not in FORMATS:
            raise ValueError(f"data.format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.format == "shards" and not self.shards:
            raise ValueError("data.format=shards needs data.shards=DIR (a prepared shard dir)")
        for name in ("train_split", "eval_split"):
            if getattr(self, name) not in SPLITS:
                raise ValueError(
                    f"data.{name} must be one of {list(SPLITS)}, got {getattr(self, name)!r}"
                )
        if self.shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        for name in ("num_workers", "max_eval_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(
                f"data.on_bad_image must be one of {list(ON_BAD_IMAGE)}, got {self.on_bad_image!r}"
            )


@dataclass(kw_only=True, slots=True)
class MaskingConfig:
    """MLM masking: select `mlm_probability` of maskable tokens; of those replace
    `mask_fraction` with [MASK], `random_fraction` with a random token, keep the rest."""

    mlm_probability: float = 0.15
    mask_fraction: float = 0.8
    random_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("mlm_probability", "mask_fraction", "random_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"masking.{name} must be in [0, 1], got {value}")
        if self.mask_fraction + self.random_fraction > 1.0:
            raise ValueError(
                "masking.mask_fraction + masking.random_fraction must be <= 1, got "
                f"{self.mask_fraction} + {self.random_fraction}"
            )


@dataclass(kw_only=True, slots=True)
class TokenizerConfig:
    """Where a run's tokenizer lives (`medtrain tokenizer train --out DIR`). Training options are
    that command's flags; the sequence length is model.text.max_length."""

    path: str = ""


@dataclass(kw_only=True, slots=True)
class ShardConfig:
    """Options of `medtrain data prepare` (each field is a flag: --shard-size, --image-size...)."""

    shard_size: int = field(default=1000, metadata={"help": "samples per shard"})
    image_size: int = field(default=512, metadata={"help": "stored image side (px)"})
    fit: str = field(default="pad", metadata={"help": "pad | crop (see data.image.fit)"})
    workers: int = field(default=1, metadata={"help": "writer processes (1: this process)"})
    window_shards: int = field(
        default=16, metadata={"help": "records are shuffled within windows of this many shards"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the within-window shuffle"})
    png_level: int = field(
        default=1, metadata={"help": "zlib level 0-9 (1: ~3x faster to write than 6, ~10% larger)"}
    )
    min_side: int = field(default=64, metadata={"help": "reject images smaller than this (px)"})
    max_aspect: float = field(default=3.0, metadata={"help": "reject images above this aspect"})

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.image_size < 8 or self.workers < 1:
            raise ValueError("shard_size >= 1, image_size >= 8 and workers >= 1 are required")
        if self.window_shards < 1 or not 0 <= self.png_level <= 9:
            raise ValueError("window_shards must be >= 1 and png_level in 0..9")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {list(FITS)}, got {self.fit!r}")
        if self.min_side < 1 or not (math.isfinite(self.max_aspect) and self.max_aspect >= 1):
            raise ValueError("min_side must be >= 1 and max_aspect a finite number >= 1")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def image_config(self) -> ImageConfig:
        return ImageConfig(fit=self.fit, min_side=self.min_side, max_aspect=self.max_aspect)

    def identity(self) -> dict[str, Any]:
        """The fields that decide shard contents (a re-run must match them)."""
        d = dataclasses.asdict(self)
        d.pop("workers")
        return d
