"""Model configuration (light: dataclasses only, no torch / timm / transformers).

Each check lives in the `__post_init__` of the dataclass that owns the field. The registry names
below are the registries' keys; tests/unit/test_fusion.py and test_attention.py check they stay
equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FUSION_NAMES = ("none", "cross", "coattn", "merged")  # = models.fusion.FUSIONS
ATTENTION_NAMES = ("eager", "sdpa", "triton", "auto")  # = models.attention.ATTENTION_IMPLS
TEXT_ATTENTION = ("eager", "sdpa")  # transformers' attn_implementation values we allow
MLM_ON = ("fused", "text")


def _finite(name: str, value: float) -> None:
    """NaN and inf pass most comparisons silently (nan < 0 is False): reject them first."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")


@dataclass(kw_only=True, slots=True)
class VisionConfig:
    model_name: str = ""  # timm swin name; "" builds from the explicit dims below
    img_size: int = 512
    in_chans: int = 1
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 8
    drop_path_rate: float = 0.1
    pretrained_path: str = ""  # local timm state dict; never downloaded

    def __post_init__(self) -> None:
        if self.model_name and not self.model_name.startswith("swin"):
            raise ValueError(
                f"vision.model_name must be a timm Swin model, got {self.model_name!r}"
            )
        if min(self.img_size, self.patch_size, self.embed_dim, self.window_size, self.in_chans) < 1:
            raise ValueError("vision img_size, patch_size, embed_dim, window_size, in_chans >= 1")
        if not self.depths:
            raise ValueError("vision.depths needs at least one stage")
        if len(self.num_heads) < len(self.depths) or min(self.depths + self.num_heads) < 1:
            raise ValueError(
                f"vision.depths {self.depths} and num_heads {self.num_heads} must be positive, "
                "with a head count for every stage"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"vision.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"vision.img_size {self.img_size} not divisible by patch_size {self.patch_size}"
            )
        stages = len(self.depths) if not self.model_name else 4  # timm's Swin models: 4 stages
        if not self.model_name:  # explicit dims (a timm name brings its own)
            for stage, heads in enumerate(self.num_heads[:stages]):
                dim = self.embed_dim * 2**stage  # stage widths double after each patch merging
                if dim % heads:
                    raise ValueError(
                        f"vision stage {stage} width {dim} (embed_dim {self.embed_dim} x "
                        f"2^{stage}) is not divisible by num_heads[{stage}] = {heads}"
                    )
        res = self.img_size // self.patch_size
        if res % 2 ** (stages - 1):
            raise ValueError(
                f"vision: {stages} stages halve the patch grid {res} (img_size {self.img_size} / "
                f"patch {self.patch_size}) {stages - 1} times: it must be divisible by "
                f"{2 ** (stages - 1)}"
            )
        for stage in range(stages):
            r = res // (2**stage)
            if r > self.window_size and r % self.window_size:
                raise ValueError(
                    f"vision.window_size {self.window_size} does not divide stage {stage} "
                    f"resolution {r} (img_size {self.img_size}, patch {self.patch_size})"
                )


@dataclass(kw_only=True, slots=True)
class TextConfig:
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_length: int = 256  # text positions; the run's tokenizer truncates to this
    dropout: float = 0.1
    attn_impl: str = "sdpa"  # transformers attention: eager | sdpa
    pretrained_path: str = ""  # local BertModel directory; its vocab must match the tokenizer

    def __post_init__(self) -> None:
        if self.attn_impl not in TEXT_ATTENTION:
            raise ValueError(
                f"model.text.attn_impl must be one of {list(TEXT_ATTENTION)}, "
                f"got {self.attn_impl!r}"
            )
        if min(self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size) < 1:
            raise ValueError("model.text sizes must be >= 1")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"model.text.hidden_size {self.hidden_size} not divisible by num_heads "
                f"{self.num_heads}"
            )
        if self.max_length < 8:
            raise ValueError(f"model.text.max_length must be >= 8, got {self.max_length}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.text.dropout must be in [0, 1), got {self.dropout}")


@dataclass(kw_only=True, slots=True)
class FusionConfig:
    name: str = "cross"  # none | cross | coattn | merged
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attn_impl: str = "sdpa"  # eager | sdpa | triton | auto (triton on CUDA, else sdpa)

    def __post_init__(self) -> None:
        if self.name not in FUSION_NAMES:
            raise ValueError(
                f"unknown fusion strategy {self.name!r}; valid: {sorted(FUSION_NAMES)}"
            )
        if self.attn_impl not in ATTENTION_NAMES:
            raise ValueError(
                f"unknown attention implementation {self.attn_impl!r}; "
                f"valid: {sorted(ATTENTION_NAMES)}"
            )
        _finite("model.fusion.mlp_ratio", self.mlp_ratio)
        if self.num_layers < 0 or self.num_heads < 1 or self.mlp_ratio <= 0:
            raise ValueError(
                "model.fusion: num_layers >= 0, num_heads >= 1, mlp_ratio > 0; got "
                f"{self.num_layers}, {self.num_heads}, {self.mlp_ratio}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.fusion.dropout must be in [0, 1), got {self.dropout}")


TEXT_POOLS = ("cls", "mean")  # models/heads.pool_text


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    embed_dim: int = 512
    mlm_on: str = "fused"  # fused: MLM reads fused text states | text: the text tower alone
    # text embedding for the contrastive head: "cls" ([CLS] state) | "mean" (over real tokens);
    # a from-scratch tower's [CLS] is the same for every text at init (see heads.pool_text)
    text_pool: str = "cls"
    init_logit_scale: float = 1 / 0.07
    max_logit_scale: float = 100.0
    use_apex_layernorm: bool = False  # NVIDIA apex FusedLayerNorm where importable

    def __post_init__(self) -> None:
        if self.mlm_on not in MLM_ON:
            raise ValueError(f"model.mlm_on must be one of {list(MLM_ON)}, got {self.mlm_on!r}")
        if self.text_pool not in TEXT_POOLS:
            raise ValueError(
                f"model.text_pool must be one of {list(TEXT_POOLS)}, got {self.text_pool!r}"
            )
        if self.embed_dim < 1:
            raise ValueError(f"model.embed_dim must be >= 1, got {self.embed_dim}")
        _finite("model.max_logit_scale", self.max_logit_scale)
        if not 0 < self.init_logit_scale <= self.max_logit_scale:
            raise ValueError(
                "model.init_logit_scale must be in (0, max_logit_scale], got "
                f"{self.init_logit_scale} (max {self.max_logit_scale})"
            )
        fusion, width = self.fusion, self.text.hidden_size  # fusion layers run at the text width
        if fusion.name != "none" and fusion.num_layers > 0:
            if width % fusion.num_heads:
                raise ValueError(
                    f"model.fusion.num_heads {fusion.num_heads} does not divide the fusion width "
                    f"{width} (model.text.hidden_size)"
                )
            if int(width * fusion.mlp_ratio) < 1:
                raise ValueError(
                    f"model.fusion.mlp_ratio {fusion.mlp_ratio} x width {width} leaves an empty "
                    "MLP hidden layer"
                )
