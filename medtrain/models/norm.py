"""LayerNorm factory: NVIDIA apex's fused LayerNorm when importable and asked for, else torch's.

apex is optional (it is not on the package index). `layer_norm_cls(True)` without apex logs one
info line per process and returns torch.nn.LayerNorm; apex itself falls back to the PyTorch op for
CPU inputs, so the choice never changes results, only speed.
"""

from __future__ import annotations

import functools
import logging

from torch import nn

log = logging.getLogger(__name__)


@functools.cache
def _apex_fused_layer_norm() -> type[nn.Module] | None:
    try:
        from apex.normalization import FusedLayerNorm  # type: ignore[import-not-found]
    except Exception:  # ImportError, or a broken apex build raising at import
        log.info("apex not importable: using torch.nn.LayerNorm")
        return None

    class ApexLayerNorm(FusedLayerNorm):
        """apex's FusedLayerNorm taking torch.nn.LayerNorm's device / dtype keywords too (timm
        passes them to every norm layer; apex's own constructor does not accept them)."""

        def __init__(
            self, normalized_shape, eps=1e-5, elementwise_affine=True, *, device=None, dtype=None
        ):
            super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)
            if device is not None or dtype is not None:
                self.to(device=device, dtype=dtype)

    return ApexLayerNorm


def layer_norm_cls(use_apex: bool) -> type[nn.Module]:
    """The LayerNorm class to build layers with (signature of torch.nn.LayerNorm)."""
    if use_apex:
        fused = _apex_fused_layer_norm()
        if fused is not None:
            return fused
    return nn.LayerNorm


def replace_layer_norms(module: nn.Module, use_apex: bool) -> nn.Module:
    """Swap every torch LayerNorm inside `module` (e.g. a transformers BertModel) in place."""
    cls = layer_norm_cls(use_apex)
    if cls is nn.LayerNorm:
        return module
    for name, child in list(module.named_children()):
        if type(child) is nn.LayerNorm:
            new = cls(child.normalized_shape, eps=child.eps, elementwise_affine=True)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            replace_layer_norms(child, use_apex)
    return module
