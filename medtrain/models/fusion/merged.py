"""`merged`: concatenate image and text tokens and run shared self-attention layers.

Image tokens go first so that all padding sits at the right end of the joint sequence and one
length per sample describes the mask: len = Li + text_len.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medtrain.models.fusion.base import Fusion, FusionConfig, FusionOutput, register_fusion
from medtrain.models.fusion.layers import AttentionBlock, MLPBlock


class MergedLayer(nn.Module):
    def __init__(self, cfg: FusionConfig, dim: int, norm: type[nn.Module]) -> None:
        super().__init__()
        self.attn = AttentionBlock(
            dim, cfg.num_heads, cfg.attn_impl, norm, cross=False, dropout=cfg.dropout
        )
        self.mlp = MLPBlock(dim, cfg.mlp_ratio, norm, cfg.dropout)

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        return self.mlp(self.attn(x, q_lens=lens, kv_lens=lens))


@register_fusion("merged")
class MergedFusion(Fusion):
    def __init__(self, cfg: FusionConfig, text_dim: int, image_dim: int, norm: type[nn.Module]):
        super().__init__(cfg, text_dim, image_dim)
        self.image_in = nn.Linear(image_dim, text_dim)
        self.modality = nn.Parameter(torch.zeros(2, text_dim))  # type embeddings: image, text
        nn.init.normal_(self.modality, std=0.02)
        self.layers = nn.ModuleList(MergedLayer(cfg, text_dim, norm) for _ in range(cfg.num_layers))
        self.norm = norm(text_dim)

    def forward(self, text: Tensor, text_lens: Tensor, image: Tensor) -> FusionOutput:
        img = self.image_in(image) + self.modality[0]  # (B, Li, C)
        n_img = img.shape[1]
        x = torch.cat([img, text + self.modality[1]], dim=1)  # (B, Li + Lt, C)
        lens = text_lens + n_img
        for layer in self.layers:
            x = self.run_layer(layer, x, lens)
        x = self.norm(x)
        return FusionOutput(text=x[:, n_img:], image=x[:, :n_img])
