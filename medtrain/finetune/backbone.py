"""The backbone of a fine-tuning run: the pretraining run named by finetune.init.

Its config.yaml's `model` section replaces the preset's (the architecture is the checkpoint's),
its tokenizer/ is the run's tokenizer (max_length = model.text.max_length), and its weights are
read through the checkpoint gate (train/checkpoint/load.fp32_state_dict). finetune.init_weights
"random" builds the same architecture freshly initialised (seeded by train.seed): the baseline arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medtrain.config import ConfigError, RunConfig, load_config
from medtrain.data.tokenizer import load_tokenizer
from medtrain.models.config import ModelConfig
from medtrain.models.medvlp import MedVLP


def init_run_dir(cfg: RunConfig) -> Path:
    """finetune.init as a pretraining run directory, or a ConfigError saying what is missing."""
    init = cfg.finetune.init
    if not init:
        raise ConfigError(
            "finetune.init is empty: pass --init RUN_DIR (a pretraining run directory holding "
            "config.yaml, tokenizer/ and checkpoints/)"
        )
    run = Path(init)
    missing = [n for n in ("config.yaml", "tokenizer") if not (run / n).exists()]
    if cfg.finetune.init_weights == "pretrained" and not (run / "checkpoints").is_dir():
        missing.append("checkpoints/")
    if missing:
        raise ConfigError(
            f"finetune.init={init} is not a pretraining run directory (missing {missing})"
        )
    return run


def load_backbone(cfg: RunConfig) -> tuple[MedVLP, Any, ModelConfig]:
    """-> (MedVLP in fp32, tokenizer, model config). Sets cfg.model and cfg.tokenizer.path to the
    init run's, so the fine-tuning run's config.yaml records what it was built from."""
    run = init_run_dir(cfg)
    model_cfg = load_config(str(run / "config.yaml")).model
    cfg.model = model_cfg
    cfg.tokenizer.path = str(run / "tokenizer")
    tokenizer = load_tokenizer(run / "tokenizer", max_length=model_cfg.text.max_length)
    weights = None
    if cfg.finetune.init_weights == "pretrained":
        from medtrain.train.checkpoint.load import fp32_state_dict

        weights = fp32_state_dict(run / "checkpoints")  # the gate, before anything is built
    # The same initialisation on every rank and in every arm of a comparison.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = MedVLP(model_cfg, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if weights is not None:
        model.load_state_dict(weights)
    return model, tokenizer, model_cfg
