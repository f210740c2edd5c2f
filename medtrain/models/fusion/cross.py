"""`cross` (ALBEF style): text self-attention, then text->image cross-attention, then MLP."""

from __future__ import annotations

from torch import Tensor, nn

from medtrain.models.fusion.base import Fusion, FusionConfig, FusionOutput, register_fusion
from medtrain.models.fusion.layers import AttentionBlock, MLPBlock


class CrossLayer(nn.Module):
    def __init__(self, cfg: FusionConfig, dim: int, norm: type[nn.Module]) -> None:
        super().__init__()
        args = (dim, cfg.num_heads, cfg.attn_impl, norm)
        self.self_attn = AttentionBlock(*args, cross=False, dropout=cfg.dropout)
        self.cross_attn = AttentionBlock(*args, cross=True, dropout=cfg.dropout)
        self.mlp = MLPBlock(dim, cfg.mlp_ratio, norm, cfg.dropout)

    def forward(self, t: Tensor, t_lens: Tensor, img: Tensor) -> Tensor:
        t = self.self_attn(t, q_lens=t_lens, kv_lens=t_lens)
        t = self.cross_attn(t, img, q_lens=t_lens)  # every image token is valid: no key mask
        return self.mlp(t)


@register_fusion("cross")
class CrossFusion(Fusion):
    def __init__(self, cfg: FusionConfig, text_dim: int, image_dim: int, norm: type[nn.Module]):
        super().__init__(cfg, text_dim, image_dim)
        self.image_in = nn.Linear(image_dim, text_dim)
        self.layers = nn.ModuleList(CrossLayer(cfg, text_dim, norm) for _ in range(cfg.num_layers))
        self.norm = norm(text_dim)

    def forward(self, text: Tensor, text_lens: Tensor, image: Tensor) -> FusionOutput:
        img = self.image_in(image)  # (B, Li, C)
        for layer in self.layers:
            text = self.run_layer(layer, text, text_lens, img)  # (B, Lt, C)
        return FusionOutput(text=self.norm(text), image=None)
