import pytest
import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from medtrain.models.fusion import FusionConfig
from medtrain.models.heads import LogitScale
from medtrain.models.medvlp import MedVLP, ModelConfig
from medtrain.models.norm import layer_norm_cls, replace_layer_norms
from medtrain.models.text import TextConfig, TextTower
from medtrain.models.vision import VisionConfig, VisionTower

VOCAB = 300


def tiny_cfg(fusion: str = "cross") -> ModelConfig:
    return ModelConfig(
        vision=VisionConfig(
            img_size=64,
            embed_dim=16,
            depths=(1, 1),
            num_heads=(2, 2),
            window_size=4,
            drop_path_rate=0.0,
        ),
        text=TextConfig(
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            intermediate_size=64,
            max_length=32,
            dropout=0.0,
        ),
        fusion=FusionConfig(name=fusion, num_layers=1, num_heads=2),
        embed_dim=24,
    )


def batch(b: int = 3, length: int = 9, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, VOCAB, (b, length), generator=g)
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


def test_vision_tower_tokens_shape():
    tower = VisionTower(tiny_cfg().vision)
    out = tower(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, (64 // 4 // 2) ** 2, tower.out_dim) and tower.out_dim == 32


def test_window_must_divide_stage_resolution():
    with pytest.raises(ValueError, match="window_size"):
        VisionConfig(img_size=96, patch_size=4, window_size=7, depths=(2, 2)).validate()


def test_pretrained_rgb_weights_are_summed_to_one_channel(tmp_path):
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


def test_pretrained_path_missing_or_mismatched(tmp_path):
    cfg = tiny_cfg().vision
    cfg.pretrained_path = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="no downloads"):
        VisionTower(cfg)
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    cfg.pretrained_path = str(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a matching Swin"):
        VisionTower(cfg)


def test_text_tower_from_local_pretrained_dir(tmp_path):
    tower = TextTower(tiny_cfg().text, VOCAB)
    tower.bert.save_pretrained(tmp_path / "bert")
    cfg = tiny_cfg().text
    cfg.pretrained_path = str(tmp_path / "bert")
    loaded = TextTower(cfg, VOCAB).eval()
    ids, mask = torch.randint(6, VOCAB, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    torch.testing.assert_close(loaded(ids, mask), tower.eval()(ids, mask))
    with pytest.raises(ValueError, match="vocab size"):
        TextTower(cfg, VOCAB + 1)


@pytest.mark.parametrize("fusion", ["none", "cross", "coattn", "merged"])
def test_medvlp_outputs_and_gradients(fusion):
    torch.manual_seed(0)
    model = MedVLP(tiny_cfg(fusion), VOCAB)
    b = batch()
    out = model(b)
    assert out["image_emb"].shape == out["text_emb"].shape == (3, 24)
    torch.testing.assert_close(out["image_emb"].norm(dim=-1), torch.ones(3))
    n_masked = int((b["mlm_labels"] != -100).sum())
    assert out["mlm_logits"].shape == (n_masked, VOCAB)  # head runs on masked positions only
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


def test_mlm_on_text_ignores_image():
    cfg = tiny_cfg("cross")
    cfg.mlm_on = "text"
    model = MedVLP(cfg, VOCAB).eval()
    b = batch()
    a = model(b)["mlm_logits"]
    b["pixel_values"] = b["pixel_values"] + 1
    torch.testing.assert_close(model(b)["mlm_logits"], a)


def test_logit_scale_init_and_clamp():
    s = LogitScale(1 / 0.07, 100.0)
    torch.testing.assert_close(s(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        s.log_scale.fill_(10.0)
    assert s().item() == 100.0


def test_apex_switch_falls_back_to_torch_layernorm():
    cls = layer_norm_cls(True)
    try:
        import apex  # noqa: F401

        assert cls is not nn.LayerNorm
    except ImportError:
        assert cls is nn.LayerNorm
    tower = replace_layer_norms(TextTower(tiny_cfg().text, VOCAB), True)
    assert any(isinstance(m, cls) for m in tower.modules())


def test_no_weight_decay_names_exist():
    model = MedVLP(tiny_cfg(), VOCAB)
    names = dict(model.named_parameters())
    skip = model.no_weight_decay()
    assert "logit_scale.log_scale" in skip
    assert any("relative_position_bias_table" in n for n in skip)
    assert all(n in names for n in skip)
