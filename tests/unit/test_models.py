"""MedVLP and its parts: towers, pretrained loading, heads, LayerNorm choice (tiny CPU sizes;
the tiny_cfg / vocab_size fixtures live in tests/unit/conftest.py)."""

import sys
import types

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from medtrain.models import norm as norm_module
from medtrain.models.config import VisionConfig
from medtrain.models.heads import LogitScale
from medtrain.models.medvlp import MedVLP
from medtrain.models.norm import layer_norm_cls, replace_layer_norms
from medtrain.models.text import TextTower
from medtrain.models.vision import VisionTower


def batch(vocab: int, b: int = 3, length: int = 9, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 5:] = 0
    ids[1, 5:] = 0
    labels = torch.full((b, length), -100)
    labels[:, 2] = ids[:, 2]
    labels[0, 4] = ids[0, 4]
    mlm_ids = ids.clone()
    mlm_ids[labels != -100] = 4
    return {
        "pixel_values": torch.randn(b, 1, 64, 64, generator=g),
        "input_ids": ids,
        "attention_mask": mask,
        "mlm_input_ids": mlm_ids,
        "mlm_labels": labels,
    }


def test_vision_tower_tokens_shape(tiny_cfg):
    tower = VisionTower(tiny_cfg().vision)
    out = tower(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, (64 // 4 // 2) ** 2, tower.out_dim) and tower.out_dim == 32


def test_window_must_divide_stage_resolution():
    with pytest.raises(ValueError, match="window_size"):
        VisionConfig(img_size=96, patch_size=4, window_size=7, depths=(2, 2))


def test_pretrained_rgb_weights_are_summed_to_one_channel(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    rgb = SwinTransformer(
        img_size=64,
        in_chans=3,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(2, 2),
        window_size=4,
        num_classes=10,
    )
    path = tmp_path / "swin_rgb.pth"
    torch.save(rgb.state_dict(), path)
    cfg = tiny_cfg().vision
    cfg.pretrained_path = str(path)
    tower = VisionTower(cfg)
    want = rgb.state_dict()["patch_embed.proj.weight"].sum(1, keepdim=True)
    torch.testing.assert_close(tower.swin.patch_embed.proj.weight, want)
    torch.testing.assert_close(
        tower.swin.layers[1].blocks[0].mlp.fc1.weight, rgb.layers[1].blocks[0].mlp.fc1.weight
    )
    # Same function as the RGB model on a gray image replicated over channels.
    x = torch.randn(1, 1, 64, 64)
    rgb.eval(), tower.eval()
    torch.testing.assert_close(
        tower(x), rgb.forward_features(x.expand(-1, 3, -1, -1)).flatten(1, 2), atol=1e-4, rtol=1e-4
    )


def test_pretrained_path_missing_or_mismatched(tmp_path, tiny_cfg):
    cfg = tiny_cfg().vision
    cfg.pretrained_path = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="no downloads"):
        VisionTower(cfg)
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    cfg.pretrained_path = str(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a matching Swin"):
        VisionTower(cfg)


def test_text_tower_from_local_pretrained_dir(tmp_path, tiny_cfg, vocab_size):
    tower = TextTower(tiny_cfg().text, vocab_size)
    tower.bert.save_pretrained(tmp_path / "bert")
    cfg = tiny_cfg().text
    cfg.pretrained_path = str(tmp_path / "bert")
    loaded = TextTower(cfg, vocab_size).eval()
    ids, mask = torch.randint(6, vocab_size, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    torch.testing.assert_close(loaded(ids, mask), tower.eval()(ids, mask))
    with pytest.raises(ValueError, match="vocab size"):
        TextTower(cfg, vocab_size + 1)


@pytest.mark.parametrize("fusion", ["none", "cross", "coattn", "merged"])
def test_medvlp_outputs_and_gradients(fusion, tiny_cfg, vocab_size):
    torch.manual_seed(0)
    model = MedVLP(tiny_cfg(fusion), vocab_size)
    b = batch(vocab_size)
    out = model(b)
    assert out["image_emb"].shape == out["text_emb"].shape == (3, 24)
    torch.testing.assert_close(out["image_emb"].norm(dim=-1), torch.ones(3))
    n_masked = int((b["mlm_labels"] != -100).sum())
    assert out["mlm_logits"].shape == (n_masked, vocab_size)  # head runs on masked positions only
    assert torch.equal(out["mlm_labels"], b["mlm_labels"][b["mlm_labels"] != -100])
    loss = (out["logit_scale"] * out["image_emb"] @ out["text_emb"].T).logsumexp(-1).mean()
    loss = loss + nn.functional.cross_entropy(out["mlm_logits"], out["mlm_labels"])
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    if fusion == "coattn":
        # The last layer's image stream feeds only consumers of fused image states (downstream
        # heads), not the MLM loss.
        no_grad = [n for n in no_grad if not n.startswith(("fusion.layers.0.i_", "fusion.i_"))]
    assert not no_grad, no_grad


def test_mlm_on_text_ignores_image(tiny_cfg, vocab_size):
    cfg = tiny_cfg("cross")
    cfg.mlm_on = "text"
    model = MedVLP(cfg, vocab_size).eval()
    b = batch(vocab_size)
    a = model(b)["mlm_logits"]
    b["pixel_values"] = b["pixel_values"] + 1
    torch.testing.assert_close(model(b)["mlm_logits"], a)


def test_logit_scale_init_and_clamp():
    s = LogitScale(1 / 0.07, 100.0)
    torch.testing.assert_close(s(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        s.log_scale.fill_(10.0)
    assert s().item() == 100.0


class FakeFusedLayerNorm(nn.Module):
    """Stand-in for apex.normalization.FusedLayerNorm: its signature and parameter names, with
    the normalization written out by hand (not torch's LayerNorm)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape, self.eps = tuple(shape), eps
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        mean = x.mean(dims, keepdim=True)
        var = (x - mean).square().mean(dims, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@pytest.fixture
def apex_module(monkeypatch):
    """Install a fake `apex.normalization` (or none: call with None); resets the cached probe."""

    def install(fused_cls):
        norm_module._apex_fused_layer_norm.cache_clear()
        if fused_cls is None:
            monkeypatch.setitem(sys.modules, "apex", None)  # import apex -> ImportError
            monkeypatch.setitem(sys.modules, "apex.normalization", None)
            return
        apex = types.ModuleType("apex")
        normalization = types.ModuleType("apex.normalization")
        normalization.FusedLayerNorm = fused_cls
        apex.normalization = normalization
        monkeypatch.setitem(sys.modules, "apex", apex)
        monkeypatch.setitem(sys.modules, "apex.normalization", normalization)

    yield install
    norm_module._apex_fused_layer_norm.cache_clear()


def test_apex_layernorm_used_when_importable_and_matches_torch(apex_module, tiny_cfg, vocab_size):
    apex_module(FakeFusedLayerNorm)
    assert issubclass(layer_norm_cls(True), FakeFusedLayerNorm)
    assert layer_norm_cls(False) is nn.LayerNorm

    torch.manual_seed(0)
    plain = MedVLP(tiny_cfg("cross"), vocab_size).eval()
    cfg = tiny_cfg("cross")
    cfg.use_apex_layernorm = True
    fused = MedVLP(cfg, vocab_size).eval()
    n_torch = sum(type(m) is nn.LayerNorm for m in plain.modules())
    assert not any(type(m) is nn.LayerNorm for m in fused.modules())  # BERT's swapped too
    assert sum(isinstance(m, FakeFusedLayerNorm) for m in fused.modules()) == n_torch > 10
    fused.load_state_dict(plain.state_dict())  # same parameter names, same values
    b = batch(vocab_size)
    with torch.no_grad():
        want, got = plain(b), fused(b)
    for key in ("image_emb", "text_emb", "mlm_logits"):
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-4, msg=key)


def test_replace_layer_norms_copies_weights_and_eps(apex_module, tiny_cfg, vocab_size):
    apex_module(FakeFusedLayerNorm)
    torch.manual_seed(0)
    tower = TextTower(tiny_cfg().text, vocab_size).eval()
    with torch.no_grad():  # non-trivial affine parameters, so a missed copy shows
        for m in tower.modules():
            if type(m) is nn.LayerNorm:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    ids, mask = torch.randint(6, vocab_size, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad():
        want = tower(ids, mask)
        eps = {n: m.eps for n, m in tower.named_modules() if type(m) is nn.LayerNorm}
        replace_layer_norms(tower, True)
        got = tower(ids, mask)
    swapped = {n: m.eps for n, m in tower.named_modules() if isinstance(m, FakeFusedLayerNorm)}
    assert swapped == eps
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_without_apex_torch_layernorm_is_used(apex_module, tiny_cfg, vocab_size):
    apex_module(None)
    assert layer_norm_cls(True) is nn.LayerNorm
    tower = TextTower(tiny_cfg().text, vocab_size)
    before = [type(m) for m in tower.modules()]
    assert replace_layer_norms(tower, True) is tower
    assert [type(m) for m in tower.modules()] == before
    assert nn.LayerNorm in before


def test_no_weight_decay_names_exist(tiny_cfg, vocab_size):
    model = MedVLP(tiny_cfg(), vocab_size)
    names = dict(model.named_parameters())
    skip = model.no_weight_decay()
    assert "logit_scale.log_scale" in skip
    assert any("relative_position_bias_table" in n for n in skip)
    assert all(n in names for n in skip)
