"""Text pooling for the contrastive text embedding (models/heads.py pool_text)."""

import pytest
import torch
import torch.nn.functional as F

from medtrain.models.config import TextConfig
from medtrain.models.heads import pool_text
from medtrain.models.text import TextTower


def test_pool_text_cls_and_masked_mean():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert torch.equal(pool_text(h, mask, "cls"), h[:, 0])
    want = torch.stack([h[0, :3].mean(0), h[1].mean(0), h[2, 0]])
    torch.testing.assert_close(pool_text(h, mask, "mean"), want)
    with pytest.raises(ValueError, match="cls"):
        pool_text(h, mask, "max")


def test_fresh_text_tower_cls_is_the_same_for_every_text_mean_is_not():
    """Why the tiny preset pools by mean: at initialization CLS carries no content."""
    torch.manual_seed(0)
    cfg = TextConfig(
        hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, max_length=32, dropout=0.0
    )
    tower = TextTower(cfg, vocab_size=100).eval()
    ids = torch.randint(5, 100, (8, 20))
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        h = tower(ids, mask)
    cos = {}
    for how in ("cls", "mean"):
        e = F.normalize(pool_text(h, mask, how), dim=-1)
        cos[how] = (e @ e.T)[~torch.eye(8, dtype=torch.bool)]
    assert cos["cls"].min() > 0.999
    assert cos["mean"].std() > 10 * cos["cls"].std()
