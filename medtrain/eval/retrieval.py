"""Image-text retrieval recall@K in both directions.

Two notions of a hit:
- exact pair (`i2t_R@k`, `t2i_R@k`): pair i's image matches pair i's text only;
- same finding set (`i2t_label_R@k`, `t2i_label_R@k`): any candidate whose study has the same
  set of positive labels (label == 1.0) as the query's study is a hit. Templated synthetic
  reports (and real ones: "No acute cardiopulmonary process.") state the same findings in many
  studies, so exact-pair recall understates what a model retrieves; `label_R@k/chance` is the
  expected same-finding-set recall of a random ranking (the same in both directions).
"""

from __future__ import annotations

import math

from torch import Tensor


def recall_at_k(image_emb: Tensor, text_emb: Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """image_emb, text_emb (N, E) unit-norm -> {"i2t_R@k", "t2i_R@k"} in [0, 1].

    Rank of the true partner = number of candidates scoring strictly higher (ties favour it).
    """
    sim = image_emb.float() @ text_emb.float().T  # (N, N)
    pos = sim.diagonal()  # (N,)
    rank_i2t = (sim > pos[:, None]).sum(dim=1)  # texts beating the true one, per image
    rank_t2i = (sim > pos[None, :]).sum(dim=0)  # images beating the true one, per text
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = (rank_i2t < k).float().mean().item()
        out[f"t2i_R@{k}"] = (rank_t2i < k).float().mean().item()
    return out


def same_findings(labels: Tensor) -> Tensor:
    """labels (N, L): 1 / 0 / -1 uncertain / NaN blank -> (N, N) bool, True where two studies
    have the same set of positive (1.0) labels; uncertain and blank count as not positive."""
    positive = labels == 1.0  # (N, L); NaN == 1 is False
    return (positive[:, None, :] == positive[None, :, :]).all(dim=-1)  # (N, N)


def _chance(match: Tensor, k: int) -> float:
    """Mean over queries of P(a uniformly random ranking of the N candidates puts at least one
    of the query's m matches in its top k) = 1 - C(N - m, k) / C(N, k)."""
    n = match.shape[1]
    k = min(k, n)
    miss = [math.comb(n - m, k) / math.comb(n, k) for m in match.sum(dim=1).tolist()]
    return 1.0 - sum(miss) / len(miss)


def label_recall_at_k(
    image_emb: Tensor, text_emb: Tensor, labels: Tensor, ks: tuple[int, ...]
) -> dict[str, float]:
    """Same-finding-set recall@K (module docstring): image_emb, text_emb (N, E) unit-norm,
    labels (N, L) of each pair's study -> {"i2t_label_R@k", "t2i_label_R@k",
    "label_R@k/chance"} in [0, 1]. The top K are taken by score (torch.topk; ties broken by
    index). A query always has at least one match: its own partner."""
    sim = image_emb.float() @ text_emb.float().T  # (N, N): rows images, columns texts
    match = same_findings(labels)  # (N, N), symmetric, diagonal True
    n = sim.shape[0]
    out = {}
    for k in ks:
        kk = min(k, n)
        top_t = sim.topk(kk, dim=1).indices  # (N, kk) texts per image
        top_i = sim.T.topk(kk, dim=1).indices  # (N, kk) images per text
        out[f"i2t_label_R@{k}"] = match.gather(1, top_t).any(dim=1).float().mean().item()
        out[f"t2i_label_R@{k}"] = match.gather(1, top_i).any(dim=1).float().mean().item()
        out[f"label_R@{k}/chance"] = _chance(match, k)
    return out


__all__ = ["label_recall_at_k", "recall_at_k", "same_findings"]
