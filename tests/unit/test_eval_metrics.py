import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.eval.prompts import FINDING_PROMPTS
from medtrain.eval.retrieval import label_recall_at_k, recall_at_k, same_findings
from medtrain.eval.zeroshot import zero_shot_auc


def test_recall_perfect_and_brute_force():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(17, 8, generator=g), dim=-1)
    r = recall_at_k(x, x, (1, 5))
    assert r["i2t_R@1"] == 1.0 and r["t2i_R@1"] == 1.0
    img = F.normalize(torch.randn(23, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(23, 8, generator=g), dim=-1)
    r = recall_at_k(img, txt, (1, 5, 10))
    sim = img @ txt.T
    for k in (1, 5, 10):
        i2t = sum(i in sim[i].topk(k).indices.tolist() for i in range(23)) / 23
        t2i = sum(j in sim[:, j].topk(k).indices.tolist() for j in range(23)) / 23
        assert r[f"i2t_R@{k}"] == pytest.approx(i2t) and r[f"t2i_R@{k}"] == pytest.approx(t2i)


def test_zero_shot_auc_against_sklearn_and_label_handling():
    g = torch.Generator().manual_seed(1)
    n, e = 40, 6
    img = F.normalize(torch.randn(n, e, generator=g), dim=-1)
    labels = torch.full((n, 14), math.nan)
    j = CHEXPERT_LABELS.index("Pleural Effusion")
    labels[:, j] = (torch.rand(n, generator=g) > 0.5).float()
    labels[:5, j] = -1.0  # uncertain: excluded
    labels[5:8, j] = math.nan  # blank: negative
    pos, neg = F.normalize(torch.randn(e, generator=g), dim=0), torch.zeros(e)
    k = CHEXPERT_LABELS.index("Fracture")
    labels[:, k] = 0.0  # one class only: left out
    out = zero_shot_auc(img, labels, {"Pleural Effusion": (pos, neg), "Fracture": (pos, neg)})
    y = (labels[5:, j] == 1).long().numpy()
    want = roc_auc_score(y, (img[5:] @ pos).numpy())
    assert out["Pleural Effusion"] == pytest.approx(want)
    assert "Fracture" not in out and out["macro"] == pytest.approx(want)
    assert "mean" not in out


def test_prompts_cover_every_label():
    assert set(FINDING_PROMPTS) == set(CHEXPERT_LABELS)
    assert all(p and n for p, n in FINDING_PROMPTS.values())


def test_label_recall_brute_force_and_chance():
    g = torch.Generator().manual_seed(2)
    n = 30
    img = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
    labels = torch.full((n, 14), math.nan)
    labels[:, 0] = (torch.rand(n, generator=g) > 0.5).float()  # 1 / 0
    labels[:, 3] = torch.where(torch.rand(n, generator=g) > 0.7, 1.0, math.nan)
    labels[::4, 3] = -1.0  # uncertain counts as not positive
    sets = [frozenset(j for j in range(14) if labels[i, j] == 1.0) for i in range(n)]
    r = label_recall_at_k(img, txt, labels, (1, 5, 40))
    sim = img @ txt.T
    for k in (1, 5):
        i2t = sum(
            any(sets[j] == sets[i] for j in sim[i].topk(k).indices.tolist()) for i in range(n)
        )
        t2i = sum(
            any(sets[j] == sets[i] for j in sim[:, i].topk(k).indices.tolist()) for i in range(n)
        )
        assert r[f"i2t_label_R@{k}"] == pytest.approx(i2t / n)
        assert r[f"t2i_label_R@{k}"] == pytest.approx(t2i / n)
        m = [sum(s == t for t in sets) for s in sets]  # matches per query, itself included
        chance = 1 - sum(math.comb(n - mi, k) / math.comb(n, k) for mi in m) / n
        assert r[f"label_R@{k}/chance"] == pytest.approx(chance)
    assert r["i2t_label_R@40"] == 1.0 and r["label_R@40/chance"] == pytest.approx(1.0)
    # a label hit is never rarer than an exact hit; perfect embeddings give 1 everywhere
    exact = recall_at_k(img, txt, (1, 5))
    assert all(r[f"i2t_label_R@{k}"] >= exact[f"i2t_R@{k}"] for k in (1, 5))
    assert label_recall_at_k(img, img, labels, (1,))["t2i_label_R@1"] == 1.0


def test_same_findings_matrix():
    labels = torch.tensor([[1.0, 0.0], [1.0, math.nan], [1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    want = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    ).bool()
    assert torch.equal(same_findings(labels), want)
