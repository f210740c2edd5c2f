"""Zero-shot classification AUC per finding from prompt pairs."""

from __future__ import annotations

import math

from sklearn.metrics import roc_auc_score
from torch import Tensor

from medtrain.data.labels import CHEXPERT_LABELS


def zero_shot_auc(
    image_emb: Tensor,  # (N, E) unit-norm
    labels: Tensor,  # (N, 14): 1 / 0 / -1 uncertain / NaN blank
    prompt_emb: dict[str, tuple[Tensor, Tensor]],  # finding -> (present (E,), absent (E,))
) -> dict[str, float]:
    """AUC-ROC per finding; positives = 1.0, negatives = 0.0 or blank, uncertain excluded.

    Findings whose eval labels hold a single class are left out (AUC undefined). "macro" is
    the unweighted mean over the findings scored (NaN when none is).
    """
    out: dict[str, float] = {}
    for finding, (pos, neg) in prompt_emb.items():
        col = labels[:, CHEXPERT_LABELS.index(finding)]
        keep = col != -1.0  # drops uncertain; NaN != -1 so blanks stay (as negatives)
        y = (col[keep] == 1.0).long()
        if y.sum() == 0 or y.sum() == len(y):
            continue
        score = image_emb[keep].float() @ (pos - neg).float()  # (n,)
        out[finding] = float(roc_auc_score(y.numpy(), score.numpy()))
    out["macro"] = sum(out.values()) / len(out) if out else math.nan
    return out
