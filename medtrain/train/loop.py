"""The pretraining loop: data -> MedVLP -> losses -> DeepSpeed engine, with eval and checkpoints.

Same entry point for one process (`medtrain pretrain`) and for `deepspeed` launches over many
ranks/nodes. Checkpoints hold the DeepSpeed state plus the data position (medtrain/data/pipeline.py)
so `--resume` continues with exactly the samples not yet seen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from deepspeed.accelerator import get_accelerator
from torch.utils.flop_counter import FlopCounterMode

from medtrain.config import ConfigError, RunConfig, dump_config
from medtrain.data.collate import Collator
from medtrain.data.config import DataConfig
from medtrain.data.pipeline import build_pipeline
from medtrain.data.shards.manifest import read_manifest
from medtrain.data.text import describe_text_path, text_path_id
from medtrain.data.tokenizer import load_tokenizer
from medtrain.eval.runner import evaluate
from medtrain.losses import compute_losses
from medtrain.models.medvlp import MedVLP, count_parameters
from medtrain.train.checkpoint import CheckpointStore
from medtrain.train.engine import build_engine, init_distributed, resolve_precision
from medtrain.train.metrics import MetricsLogger, peak_memory_gb
from medtrain.train.state import rng_state, set_rng_state

log = logging.getLogger(__name__)


def note_text_path(data: DataConfig) -> None:
    """Once per run (rank 0): log that de-identification is off (data.deid.enabled false), and
    warn when shards were written under another text path than this run's (data/text.py)."""
    run = text_path_id(data.deid)
    if not data.deid.enabled:
        log.warning(
            "data.deid.enabled is false: report text is NOT de-identified by medtrain (only for "
            "sources de-identified at the source); text path %s",
            describe_text_path(run),
        )
    dirs = [data.shards] if data.format == "shards" else []
    for shard_dir in dict.fromkeys([*dirs, data.eval_shards]):
        if shard_dir:
            written = read_manifest(shard_dir).text_path
            if written.get("hash") != run["hash"]:
                log.warning(
                    "shards in %s were written under text path %s; this run's text path is %s: "
                    "the texts do not follow this run's de-identification/sectioning",
                    shard_dir,
                    describe_text_path(written),
                    describe_text_path(run),
                )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Composes tokenizer, data stream, model, DeepSpeed engine, evaluation and logging."""

    def __init__(self, cfg: RunConfig, *, resume: bool) -> None:
        self.cfg = cfg
        self.rank, self.world = init_distributed()
        seed_everything(cfg.train.seed + self.rank)
        self.out = Path(cfg.train.out_dir)
        self._resolve_precision(resume)  # before config.yaml is written: it records the result
        self.ckpt_dir = self.out / "checkpoints"
        self.store = CheckpointStore(
            self.ckpt_dir, rank=self.rank, world=self.world, keep_last=cfg.train.keep_last
        )
        if not resume and self.store.has_checkpoint():
            raise ConfigError(
                f"{self.ckpt_dir} already holds a run; pass --resume to continue it or set "
                "train.out_dir to a new directory"
            )
        # The run's tokenizer carries the model's text length (and truncates to it).
        self.tokenizer = load_tokenizer(cfg.tokenizer.path, max_length=cfg.model.text.max_length)
        self.size, self.max_len = cfg.model.vision.img_size, cfg.model.text.max_length
        self.pipeline = build_pipeline(cfg.data, image_size=self.size)
        self.eval_ds = self.pipeline.eval()
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.out / "config.yaml")
            self.tokenizer.save_pretrained(self.out / "tokenizer")
            note_text_path(cfg.data)

        self.model = MedVLP(
            cfg.model, vocab_size=len(self.tokenizer), pad_token_id=self.tokenizer.pad_token_id
        )
        if cfg.train.activation_checkpointing:
            self.model.set_grad_checkpointing(True)
        found = self.store.find() if resume else None
        self.engine, _, _ = build_engine(
            self.model, cfg.train, self.world, overrides=self.store.ds_config_overrides(found)
        )
        self.dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32

        self.step, client = 0, None
        self.resumed_rng = None
        if found is not None:
            self.store.load(self.engine, found)
            self.step, client = found.step, found.state
            self.resumed_rng = (found.rank_state or {}).get("rng")
            self._say(f"resumed from {self.ckpt_dir / found.tag} at step {self.step}")
        elif resume:
            self._say(f"no checkpoint under {self.ckpt_dir}: starting from step 0")
        collator = Collator(
            self.tokenizer,
            max_length=self.max_len,
            masking=cfg.masking,
            seed=cfg.train.seed * 1000 + self.rank * 7919 + self.step,
        )
        self.data = self.pipeline.train(
            batch_size=cfg.train.micro_batch_size,
            rank=self.rank,
            world=self.world,
            seed=cfg.train.seed,
            collator=collator,
        )
        if client is not None:
            self.data.restore(client)
        self.logger = MetricsLogger(self.out, enabled=self.rank == 0)
        self.flops_per_micro, self.flops_counted = 0.0, False

    def _resolve_precision(self, resume: bool) -> None:
        """train.precision "auto" -> bf16 | fp32, once per run: a resumed run keeps what its
        config.yaml recorded (its checkpoints hold that precision's optimizer state)."""
        train = self.cfg.train
        if train.precision != "auto":
            return
        saved = self.out / "config.yaml"
        before = None
        if resume and saved.is_file():
            before = (yaml.safe_load(saved.read_text()) or {}).get("train", {}).get("precision")
        if before in ("bf16", "fp32"):
            train.precision, why = before, "as the run being resumed"
        else:
            train.precision, why = resolve_precision("auto", get_accelerator().device_name())
        self._say(f"train.precision=auto -> {train.precision} ({why})")

    def _say(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)

    def evaluate(self, tag: str) -> dict[str, float]:
        metrics = evaluate(
            self.engine.module,
            self.eval_ds,
            self.tokenizer,
            self.cfg.eval,
            max_length=self.max_len,
            device=self.engine.device,
            on_device=self.pipeline.on_device,
            max_samples=self.cfg.data.max_eval_samples,
        )
        if self.rank == 0:
            (self.out / "eval").mkdir(exist_ok=True)
            (self.out / "eval" / f"{tag}.json").write_text(json.dumps(metrics, indent=2))
            self.logger.log(self.step, {f"eval/{k}": v for k, v in metrics.items()})
        return metrics

    def save(self) -> None:
        """Collective: DeepSpeed's state + run-wide state (rank 0) + this rank's own state."""
        state = {"step": self.step, "world_size": self.world, **self.data.state(self.world)}
        self.store.save(self.engine, step=self.step, state=state, rank_state={"rng": rng_state()})

    def micro_step(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
        batch = self.pipeline.on_device(batch, self.engine.device, self.dtype)
        counting = not self.flops_counted  # count model FLOPs once, on the first micro-batch
        ctx = FlopCounterMode(display=False) if counting else contextlib.nullcontext()
        with ctx:
            outputs = self.engine(batch, with_mlm=self.cfg.loss.mlm_weight > 0)
            losses = compute_losses(outputs, self.cfg.loss)
            self.engine.backward(losses["loss"])
        if counting:
            self.flops_per_micro, self.flops_counted = float(ctx.get_total_flops()), True
        self.engine.step()
        return losses, outputs

    def fit(self) -> dict[str, Any]:
        cfg, engine = self.cfg.train, self.engine
        accum = engine.gradient_accumulation_steps()
        n = count_parameters(self.model)
        self._say(
            f"medtrain pretrain: {self.world} rank(s), {self.data.n_train} train / "
            f"{len(self.eval_ds)} eval pairs, {n['total'] / 1e6:.1f}M params, global batch "
            f"{engine.train_batch_size()}, {cfg.steps} steps -> {self.out}"
        )
        batches = self.data.batches()
        t0 = t_log = time.time()
        sums: dict[str, torch.Tensor] = {}
        micro_since_log = 0
        engine.train()
        if self.resumed_rng is not None:  # last, so nothing above draws from the restored streams
            set_rng_state(self.resumed_rng)
        while self.step < cfg.steps:
            for _ in range(accum):
                losses, outputs = self.micro_step(next(batches))
                for k, v in losses.items():  # summed on device; read back only when logging
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                micro_since_log += 1
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.time()
                self._log(sums, micro_since_log, now - t_log, outputs)
                sums, micro_since_log, t_log = {}, 0, now
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self.evaluate(f"step{self.step}")
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                self.save()
        if not cfg.ckpt_every or self.step % cfg.ckpt_every:
            self.save()
        metrics = self.evaluate("final")
        self.logger.close()
        summary = {
            "step": self.step,
            "out_dir": str(self.out),
            "checkpoints": str(self.ckpt_dir),
            "tensorboard": str(self.out / "tb"),
            "eval": metrics,
            "train_wall_s": time.time() - t0,
        }
        if self.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _log(self, sums: dict, n_micro: int, seconds: float, outputs: dict) -> None:
        scalars = {
            f"loss/{'total' if k == 'loss' else k}": float(v) / n_micro for k, v in sums.items()
        }
        gn = self.engine.get_global_grad_norm()
        samples = n_micro * self.cfg.train.micro_batch_size * self.world
        scalars.update(
            {
                "train/lr": self.engine.get_lr()[0],
                "train/grad_norm": float(gn) if gn is not None else float("nan"),
                "train/logit_scale": outputs["logit_scale"].item(),
                "perf/samples_per_s": samples / seconds,
                # Model FLOPs of this rank (first micro-batch counted) over wall time.
                "perf/tflops_per_rank": self.flops_per_micro * n_micro / seconds / 1e12,
                "perf/peak_memory_gb": peak_memory_gb(),
                **self.data.scalars(),
            }
        )
        self.logger.log(self.step, scalars)


def pretrain(cfg: RunConfig, *, resume: bool = False) -> dict[str, Any]:
    return Trainer(cfg, resume=resume).fit()
