"""`none`: dual encoder. No cross-modal layers; MLM runs on the text encoder alone."""

from __future__ import annotations

from torch import Tensor, nn

from medtrain.models.fusion.base import Fusion, FusionConfig, FusionOutput, register_fusion


@register_fusion("none")
class NoFusion(Fusion):
    def __init__(self, cfg: FusionConfig, text_dim: int, image_dim: int, norm: type[nn.Module]):
        super().__init__(cfg, text_dim, image_dim)

    def forward(self, text: Tensor, text_lens: Tensor, image: Tensor) -> FusionOutput:
        return FusionOutput(text=text, image=None)
