"""Read a trained model back out of a run directory (DeepSpeed checkpoint -> fp32 state dict)."""

from __future__ import annotations

from pathlib import Path

import torch

from medtrain.config import RunConfig, load_config
from medtrain.data.tokenizer import load_tokenizer
from medtrain.models.medvlp import MedVLP
from medtrain.train.checkpoint.gate import check_tag


def latest_tag(ckpt_dir: Path) -> str:
    latest = ckpt_dir / "latest"
    if not latest.is_file():
        raise FileNotFoundError(f"no checkpoint under {ckpt_dir} (missing 'latest')")
    return latest.read_text().strip()


def fp32_state_dict(ckpt_dir: Path, tag: str | None = None) -> dict[str, torch.Tensor]:
    """Consolidated fp32 weights from any ZeRO stage (stage 0 keeps them in model_states)."""
    tag = tag or latest_tag(ckpt_dir)
    folder = ckpt_dir / tag
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint {folder} does not exist")
    check_tag(folder)  # before anything below unpickles a file of it
    if any(folder.glob("*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
    # ZeRO-0: the module weights sit in mp_rank_00_model_states.pt (passed the gate above).
    states = torch.load(
        folder / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False
    )
    return {k: v.float() for k, v in states["module"].items()}


def load_run(run_dir: str | Path, tag: str | None = None) -> tuple[MedVLP, object, RunConfig]:
    """-> (model in fp32 eval mode, tokenizer, config) from a pretraining run directory."""
    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.yaml"))
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model = MedVLP(cfg.model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model.load_state_dict(fp32_state_dict(run_dir / "checkpoints", tag))
    return model.eval(), tokenizer, cfg
