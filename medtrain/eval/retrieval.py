"""Image-text retrieval recall@K in both directions (pair i's image matches pair i's text)."""

from __future__ import annotations

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
