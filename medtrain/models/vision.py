"""Vision tower: a timm Swin Transformer for single-channel chest X-rays.

Built either from a timm model name (`swin_base_patch4_window7_224`, overriding resolution,
window and channels) or from explicit dims. General-purpose pretrained weights load from a LOCAL
file (timm state dict; .safetensors or a torch file read with weights_only=True): the RGB patch
embedding is summed over channels to one, the classifier head dropped, and relative position
tables resized by timm's own filter when the window size differs.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from medtrain.models.config import VisionConfig


class VisionTower(nn.Module):
    """pixel_values (B, C, H, W) -> tokens (B, N, D) (final stage, normed)."""

    def __init__(self, cfg: VisionConfig, norm: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        common = dict(
            img_size=cfg.img_size,
            in_chans=cfg.in_chans,
            window_size=cfg.window_size,
            drop_path_rate=cfg.drop_path_rate,
            num_classes=0,
            global_pool="",
            norm_layer=norm,
        )
        if cfg.model_name:
            self.swin = timm.create_model(cfg.model_name, pretrained=False, **common)
        else:
            self.swin = SwinTransformer(
                patch_size=cfg.patch_size,
                embed_dim=cfg.embed_dim,
                depths=tuple(cfg.depths),
                num_heads=tuple(cfg.num_heads),
                **common,
            )
        self.out_dim: int = self.swin.num_features
        if cfg.pretrained_path:
            load_pretrained_swin(self.swin, cfg.pretrained_path)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.swin.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {f"swin.{n}" for n in self.swin.no_weight_decay()}

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = self.swin.forward_features(pixel_values)  # (B, h, w, D) channels-last
        return x.flatten(1, 2)  # (B, N, D)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


def load_pretrained_swin(model: SwinTransformer, path: str | Path) -> None:
    """Load general-purpose Swin weights from a local file into a 1-channel model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vision.pretrained_path {path} does not exist (no downloads)")
    sd = dict(_read_state_dict(path))
    w = sd.get("patch_embed.proj.weight")  # (D, 3, p, p) for RGB checkpoints
    want = model.patch_embed.proj.weight.shape[1]
    if w is not None and w.shape[1] != want:
        if want != 1:
            raise ValueError(f"cannot adapt {w.shape[1]}-channel patch embedding to {want}")
        sd["patch_embed.proj.weight"] = w.sum(dim=1, keepdim=True)
    sd = {k: v for k, v in sd.items() if not k.startswith("head")}
    sd = checkpoint_filter_fn(sd, model)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith(("relative_position_index", "attn_mask"))]
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a matching Swin checkpoint; missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
