"""Multi-label image classifier: pooled image tokens of the backbone -> dropout -> linear.

The pooled embedding is the mean of the vision tower's tokens before the contrastive projection
(the projection is trained for the text space; the tokens keep more of the image). A linear probe
(`frozen=True`) runs the backbone without gradients and always in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtrain.models.medvlp import MedVLP


def masked_bce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean binary cross-entropy over the unmasked entries (mask 1 = counted); 0 when none."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    m = mask.float()
    return (loss * m).sum() / m.sum().clamp(min=1.0)


class Classifier(nn.Module):
    def __init__(
        self, backbone: MedVLP, n_labels: int, *, dropout: float = 0.1, frozen: bool = False
    ) -> None:
        super().__init__()
        self.backbone, self.frozen = backbone, frozen
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.vision.out_dim, n_labels))
        if frozen:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:  # a linear probe's backbone never trains (no dropout, no drop-path)
            self.backbone.eval()
        return self

    def features(self, pixel_values: Tensor) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self.backbone.vision(pixel_values)  # (B, N, Cv)
        return tokens.mean(dim=1)  # (B, Cv)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.head(self.features(batch["pixel_values"]))  # (B, K)
        out = {"logits": logits}
        if "targets" in batch:
            out["loss"] = masked_bce(logits, batch["targets"], batch["mask"])
        return out
