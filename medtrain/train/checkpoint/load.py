"""Read a trained model back out of a run directory (DeepSpeed checkpoint -> fp32 state dict).

fp32_state_dict / load_run are the entry points for anything that reads weights out of a run
(`medtrain eval`, exporting weights): the tag is chosen as for resuming (`latest`, falling back to
the newest complete tag), every file of it passes the gate (gate.py), and zero_to_fp32 reads
them in the gate's weights-only mode.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medtrain.config import RunConfig, load_config
from medtrain.data.tokenizer import load_tokenizer
from medtrain.models.medvlp import MedVLP
from medtrain.train.checkpoint.gate import allowlist, weights_only_loads
from medtrain.train.checkpoint.store import CheckpointStore


def fp32_state_dict(
    ckpt_dir: Path, tag: str | None = None, notes: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Consolidated fp32 weights from any ZeRO stage (stage 0 keeps them in model_states).

    `tag` None: what `latest` names, or the newest complete tag (a line appended to `notes`
    says so); an explicit tag must be complete. Raises CheckpointError / UnsafeCheckpointError
    (the gate) or FileNotFoundError (no checkpoint at all)."""
    ckpt_dir = Path(ckpt_dir)
    tag, why = CheckpointStore(ckpt_dir, rank=0, world=1).choose(tag)  # gate included
    if notes is not None:
        notes += why
    folder = ckpt_dir / tag
    if any(folder.glob("*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        with weights_only_loads():  # zero_to_fp32 passes weights_only=False itself
            return get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
    # ZeRO-0: the module weights sit in mp_rank_00_model_states.pt (it passed the gate).
    with torch.serialization.safe_globals(allowlist()):
        states = torch.load(
            folder / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True
        )
    return {k: v.float() for k, v in states["module"].items()}


def load_run(
    run_dir: str | Path, tag: str | None = None, notes: list[str] | None = None
) -> tuple[MedVLP, object, RunConfig]:
    """-> (model in fp32 eval mode, tokenizer, config) from a pretraining run directory; the
    checkpoint goes through the gate (fp32_state_dict)."""
    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.yaml"))
    weights = fp32_state_dict(run_dir / "checkpoints", tag, notes)  # the gate, first
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model = MedVLP(cfg.model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model.load_state_dict(weights)
    return model.eval(), tokenizer, cfg
