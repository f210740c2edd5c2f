"""MedVLP: vision tower + text tower + fusion + heads, for contrastive + MLM pretraining."""

from __future__ import annotations

from torch import Tensor, nn

from medtrain.models.config import ModelConfig
from medtrain.models.fusion import build_fusion
from medtrain.models.fusion.layers import lengths_from_mask
from medtrain.models.heads import LogitScale, MLMHead, Projection, pool_text
from medtrain.models.norm import layer_norm_cls, replace_layer_norms
from medtrain.models.text import TextTower
from medtrain.models.vision import VisionTower


class MedVLP(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_token_id: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        norm = layer_norm_cls(cfg.use_apex_layernorm)
        self.vision = VisionTower(cfg.vision, norm)
        self.text = TextTower(cfg.text, vocab_size, pad_token_id)
        replace_layer_norms(self.text, cfg.use_apex_layernorm)
        c_txt, c_img = self.text.out_dim, self.vision.out_dim
        self.fusion = build_fusion(cfg.fusion, text_dim=c_txt, image_dim=c_img, norm=norm)
        self.image_proj = Projection(c_img, cfg.embed_dim)
        self.text_proj = Projection(c_txt, cfg.embed_dim)
        self.logit_scale = LogitScale(cfg.init_logit_scale, cfg.max_logit_scale)
        self.mlm_head = MLMHead(c_txt, vocab_size, norm)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for tower in (self.vision, self.text, self.fusion):
            tower.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {"logit_scale.log_scale"} | {f"vision.{n}" for n in self.vision.no_weight_decay()}

    # --- pieces, usable on their own by evaluation -------------------------------------------
    def encode_image(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.vision(pixel_values)  # (B, N, Cv)
        return tokens, self.image_proj(tokens.mean(dim=1))  # (B, N, Cv), (B, E)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.text(input_ids, attention_mask)  # (B, L, C)
        pooled = pool_text(hidden, attention_mask, self.cfg.text_pool)  # (B, C)
        return hidden, self.text_proj(pooled)  # (B, L, C), (B, E)

    def mlm_logits(
        self,
        image_tokens: Tensor,
        mlm_input_ids: Tensor,
        attention_mask: Tensor,
        mlm_labels: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Logits (M, V) and labels (M,) at the M masked positions only."""
        hidden = self.text(mlm_input_ids, attention_mask)  # (B, L, C)
        if self.cfg.mlm_on == "fused":
            hidden = self.fusion(hidden, lengths_from_mask(attention_mask), image_tokens).text
        sel = mlm_labels != -100  # (B, L)
        return self.mlm_head(hidden[sel]), mlm_labels[sel]  # (M, V), (M,)

    def forward(self, batch: dict[str, Tensor], *, with_mlm: bool = True) -> dict[str, Tensor]:
        image_tokens, image_emb = self.encode_image(batch["pixel_values"])
        _, text_emb = self.encode_text(batch["input_ids"], batch["attention_mask"])
        out = {
            "image_emb": image_emb,  # (B, E) fp32, unit norm
            "text_emb": text_emb,  # (B, E) fp32, unit norm
            "logit_scale": self.logit_scale(),  # () fp32
            "mlm_logits": None,
            "mlm_labels": None,
        }
        if with_mlm:
            out["mlm_logits"], out["mlm_labels"] = self.mlm_logits(
                image_tokens, batch["mlm_input_ids"], batch["attention_mask"], batch["mlm_labels"]
            )
        return out


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()
    } | {"total": sum(p.numel() for p in model.parameters())}


__all__ = ["MedVLP", "ModelConfig", "count_parameters"]
