"""VQA as answer classification (M3AE / ALBEF style) over the backbone's fused representation.

cross / coattn / merged fusion: the question's [CLS] state after fusion with the image tokens;
fusion `none` (dual encoder, no fused states): concat(mean image token, the question's pooled
state), pooled as pretraining pooled text (model.text_pool: [CLS] or the mean over real tokens).
Both go through a 2-layer MLP to logits over the training split's answer set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtrain.models.fusion.layers import lengths_from_mask
from medtrain.models.heads import pool_text
from medtrain.models.medvlp import MedVLP

IGNORE = -100  # answer index of a question whose answer is not a class (no loss)


class VqaModel(nn.Module):
    def __init__(
        self, backbone: MedVLP, n_answers: int, *, dropout: float = 0.1, frozen: bool = False
    ) -> None:
        super().__init__()
        self.backbone, self.frozen = backbone, frozen
        self.fused = backbone.cfg.fusion.name != "none"
        c_txt, c_img = backbone.text.out_dim, backbone.vision.out_dim
        d = c_txt if self.fused else c_img + c_txt
        self.head = nn.Sequential(
            nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, n_answers)
        )
        if frozen:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> VqaModel:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def features(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self.backbone.vision(pixel_values)  # (B, N, Cv)
            hidden = self.backbone.text(input_ids, attention_mask)  # (B, L, Ct)
            if not self.fused:
                pooled = pool_text(hidden, attention_mask, self.backbone.cfg.text_pool)  # (B, Ct)
                return torch.cat([tokens.mean(dim=1), pooled], dim=-1)  # (B, Cv + Ct)
            fused = self.backbone.fusion(hidden, lengths_from_mask(attention_mask), tokens).text
            return fused[:, 0]  # (B, Ct)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        feats = self.features(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        logits = self.head(feats)  # (B, A)
        out = {"logits": logits}
        if "answer" in batch:
            target = batch["answer"]
            if (target != IGNORE).any():
                out["loss"] = F.cross_entropy(logits.float(), target, ignore_index=IGNORE)
            else:  # keeps the graph (DeepSpeed needs a backward) with a zero loss
                out["loss"] = logits.float().sum() * 0.0
        return out
