"""`coattn` (METER / M3AE style): two streams; in each layer both run self-attention, then
cross-attend to the other stream's self-attended states, then an MLP."""

from __future__ import annotations

from torch import Tensor, nn

from medtrain.models.fusion.base import Fusion, FusionConfig, FusionOutput, register_fusion
from medtrain.models.fusion.layers import AttentionBlock, MLPBlock


class CoAttnLayer(nn.Module):
    def __init__(self, cfg: FusionConfig, dim: int, norm: type[nn.Module]) -> None:
        super().__init__()
        args = (dim, cfg.num_heads, cfg.attn_impl, norm)
        d = cfg.dropout
        self.t_self = AttentionBlock(*args, cross=False, dropout=d)
        self.i_self = AttentionBlock(*args, cross=False, dropout=d)
        self.t_cross = AttentionBlock(*args, cross=True, dropout=d)
        self.i_cross = AttentionBlock(*args, cross=True, dropout=d)
        self.t_mlp = MLPBlock(dim, cfg.mlp_ratio, norm, d)
        self.i_mlp = MLPBlock(dim, cfg.mlp_ratio, norm, d)

    def forward(self, t: Tensor, t_lens: Tensor, img: Tensor) -> tuple[Tensor, Tensor]:
        t = self.t_self(t, q_lens=t_lens, kv_lens=t_lens)  # (B, Lt, C)
        img = self.i_self(img)  # (B, Li, C)
        t2 = self.t_cross(t, img, q_lens=t_lens)  # text -> image: all keys valid
        img2 = self.i_cross(img, t, kv_lens=t_lens)  # image -> text: padded text keys masked
        return self.t_mlp(t2), self.i_mlp(img2)


@register_fusion("coattn")
class CoAttnFusion(Fusion):
    def __init__(self, cfg: FusionConfig, text_dim: int, image_dim: int, norm: type[nn.Module]):
        super().__init__(cfg, text_dim, image_dim)
        self.image_in = nn.Linear(image_dim, text_dim)
        self.layers = nn.ModuleList(CoAttnLayer(cfg, text_dim, norm) for _ in range(cfg.num_layers))
        self.t_norm, self.i_norm = norm(text_dim), norm(text_dim)

    def forward(self, text: Tensor, text_lens: Tensor, image: Tensor) -> FusionOutput:
        img = self.image_in(image)  # (B, Li, C)
        for layer in self.layers:
            text, img = self.run_layer(layer, text, text_lens, img)
        return FusionOutput(text=self.t_norm(text), image=self.i_norm(img))
