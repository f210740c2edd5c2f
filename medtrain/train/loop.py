"""The pretraining loop: data -> MedVLP -> losses -> DeepSpeed engine, with eval and checkpoints.

Same entry point for one process (`medtrain pretrain`) and for `deepspeed` launches over many
ranks/nodes. Checkpoints hold the DeepSpeed state plus the data position (medtrain/data/pipeline.py)
and, per rank, every RNG stream and the MLM masker's generator, so `--resume` continues with
exactly the samples not yet seen and (same world size, CPU fp32) exactly the same losses.

Long-run safety (issue 9): non-finite steps are skipped on every rank and too many in a row stop
the run (guard.py); a hung rank dumps its stacks and exits (watchdog.py); SIGUSR1 (a scheduler's
pre-timeout signal, on any one rank) saves a checkpoint at a step all ranks agree on and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from medtrain.config import ConfigError, RunConfig, dump_config
from medtrain.data.collate import Collator, Masker
from medtrain.data.config import DataConfig
from medtrain.data.pipeline import build_pipeline
from medtrain.data.shards.manifest import read_manifest
from medtrain.data.text import describe_text_path, text_path_id
from medtrain.data.tokenizer import load_tokenizer
from medtrain.eval.runner import evaluate
from medtrain.losses import compute_losses
from medtrain.models.medvlp import MedVLP, count_parameters
from medtrain.train.checkpoint import CheckpointStore
from medtrain.train.engine import build_engine, init_distributed, resolve_run_precision
from medtrain.train.errors import TrainingDiverged
from medtrain.train.guard import StepGuard, weights_finite
from medtrain.train.metrics import MetricsLogger, peak_memory_gb
from medtrain.train.state import reseed, rng_state, set_rng_state
from medtrain.train.watchdog import Watchdog

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


def start_run(cfg: RunConfig, *, resume: bool) -> tuple[int, int, Path, CheckpointStore]:
    """The common start of a pretraining or fine-tuning run -> (rank, world, out_dir, store).

    Joins the process group, seeds this rank, resolves train.precision "auto" (before
    config.yaml is written: it records the result) and refuses to start a new run over
    checkpoints (ConfigError: --resume or another train.out_dir)."""
    rank, world = init_distributed(cfg.train.dist_timeout_min)
    seed_everything(cfg.train.seed + rank)
    out = Path(cfg.train.out_dir)
    note = resolve_run_precision(cfg.train, out, resume=resume)
    if note and rank == 0:
        print(note, flush=True)
    ckpt_dir = out / "checkpoints"
    store = CheckpointStore(ckpt_dir, rank=rank, world=world, keep_last=cfg.train.keep_last)
    if not resume and store.has_checkpoint():
        raise ConfigError(
            f"{ckpt_dir} already holds a run; pass --resume to continue it or set "
            "train.out_dir to a new directory"
        )
    return rank, world, out, store


class StopRequest:
    """SIGUSR1 (a scheduler's warning before its time limit) -> a flag the loop polls each step.

    Installed before anything slow so an early signal is not fatal (SIGUSR1's default action
    terminates the process)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


def masker_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of the MLM masker of `rank` (step > 0: re-seeding after a world-size change)."""
    return seed * 1000 + rank * 7919 + step * 104_729 + 1


class Trainer:
    """Composes tokenizer, data stream, model, DeepSpeed engine, evaluation and logging."""

    def __init__(self, cfg: RunConfig, *, resume: bool) -> None:
        self.cfg = cfg
        self.stop_request = StopRequest()
        self.rank, self.world, self.out, self.store = start_run(cfg, resume=resume)
        self.ckpt_dir = self.out / "checkpoints"
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
        self.resumed_rank_state: dict[str, Any] | None = None
        self.resumed_step: int | None = None
        if found is not None:
            for note in found.notes:
                self._say(note)
            self.store.load(self.engine, found)
            self.step, client = found.step, found.state
            self.resumed_step = found.step
            self.resumed_rank_state = found.rank_state
            self._say(f"resumed from {self.ckpt_dir / found.tag} at step {self.step}")
        elif resume:
            self._say(f"no checkpoint under {self.ckpt_dir}: starting from step 0")
        collator = Collator(self.tokenizer, max_length=self.max_len)
        # MLM masking runs here, in the training process, from a generator saved per rank.
        self.masker = Masker(
            self.tokenizer, masking=cfg.masking, seed=masker_seed(cfg.train.seed, self.rank)
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
        self.logger = MetricsLogger(
            self.out, enabled=self.rank == 0, resumed_step=self.resumed_step
        )
        self.flops_per_micro, self.flops_counted = 0.0, False
        train = cfg.train
        self.guard = StepGuard.for_run(
            self.cfg.train, device=self.engine.device, out_dir=self.out, rank=self.rank
        )
        self.guard.install(self.engine.optimizer)
        self.watchdog = Watchdog(
            factor=train.watchdog_factor,
            min_s=train.watchdog_min_s,
            warmup=train.watchdog_warmup_steps,
            dump_path=self.out / f"hang-rank{self.rank}.txt",
            rank=self.rank,
        )
        self.saved_step = -1  # the step of the newest checkpoint this process wrote

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
        """Collective: DeepSpeed's state + run-wide state (rank 0) + this rank's own state (every
        RNG stream and the masker's generator). Refuses (TrainingDiverged) when any rank's
        weights are non-finite, so `latest` never moves to a bad checkpoint."""
        if self.saved_step == self.step:
            return
        with self.watchdog.paused():
            if not weights_finite(self.engine.module.parameters(), self.engine.device):
                raise TrainingDiverged(
                    f"parameters are non-finite at step {self.step}: checkpoint not written "
                    f"(latest still names the previous one); try a lower train.lr or check "
                    "the data, then resume with --resume"
                )
            state = {"step": self.step, "world_size": self.world, **self.data.state(self.world)}
            rank_state = {"rng": rng_state(), "masker": self.masker.state()}
            self.store.save(self.engine, step=self.step, state=state, rank_state=rank_state)
            self.saved_step = self.step

    def _restore_streams(self) -> None:
        """Last thing before the first step: this rank's RNG streams and masker as saved, or,
        when the checkpoint has none for this rank (world size changed), deterministic seeds
        from (seed, rank, step)."""
        if self.resumed_step is None:
            return
        saved, seed = self.resumed_rank_state, self.cfg.train.seed
        if saved is not None and "rng" in saved and "masker" in saved:
            set_rng_state(saved["rng"])
            self.masker.load_state(saved["masker"])
            return
        reseed(seed, self.rank, self.step)
        self.masker = Masker(
            self.tokenizer,
            masking=self.cfg.masking,
            seed=masker_seed(seed, self.rank, self.step),
        )
        self._say(
            f"the checkpoint holds no RNG/masking state for this world size ({self.world} "
            f"rank(s)): re-seeded from (train.seed={seed}, rank, step {self.step}); the losses "
            "will not repeat an uninterrupted run's exactly"
        )

    def micro_step(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
        """Forward and backward of one micro-batch (engine.step() is the caller's)."""
        batch = self.pipeline.on_device(self.masker(batch), self.engine.device, self.dtype)
        counting = not self.flops_counted  # count model FLOPs once, on the first micro-batch
        ctx = FlopCounterMode(display=False) if counting else contextlib.nullcontext()
        with ctx:
            outputs = self.engine(batch, with_mlm=self.cfg.loss.mlm_weight > 0)
            losses = compute_losses(outputs, self.cfg.loss)
            self.engine.backward(losses["loss"])
        if counting:
            self.flops_per_micro, self.flops_counted = float(ctx.get_total_flops()), True
        return losses, outputs

    def _local_grads(self) -> list[torch.Tensor]:
        """ZeRO-0 keeps the reduced gradients in param.grad, where DeepSpeed clips them before
        the gate sees them (an inf norm scales them to zeros): check them before engine.step().
        Other stages check the global norm themselves and the gate sees their buffers."""
        if self.cfg.train.zero_stage != 0:
            return []
        return [p.grad for p in self.engine.module.parameters() if p.grad is not None]

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
        # The first batch is fetched before the RNG streams are restored: creating a loader may
        # draw from the global torch RNG, which the uninterrupted run did before step 1.
        pending = next(batches) if self.step < cfg.steps else None
        t0 = t_log = time.time()
        sums: dict[str, torch.Tensor] = {}
        micro_since_log = 0
        engine.train()
        self._restore_streams()  # last, so nothing above draws from the restored streams
        self.watchdog.start()
        stopped = False
        try:
            while self.step < cfg.steps:
                step_loss, ids = None, []
                for i in range(accum):
                    batch, pending = pending if pending is not None else next(batches), None
                    ids += list(batch.get("ids", []))
                    losses, outputs = self.micro_step(batch)
                    for k, v in losses.items():  # summed on device; read back only when logging
                        sums[k] = sums.get(k, 0.0) + v.detach().float()
                    loss = losses["loss"].detach().float()
                    step_loss = loss if step_loss is None else step_loss + loss
                    micro_since_log += 1
                    if i == accum - 1:  # the optimizer step: agree on skip/stop first
                        mean_loss, stop = self.guard.before_step(
                            step_loss / accum,
                            grads=self._local_grads(),
                            stop=self.stop_request.requested,
                        )
                    engine.step()
                self.step += 1
                result = self.guard.after_step(
                    self.step, mean_loss, applied=engine.was_step_applied(), stop=stop, ids=ids
                )
                self.watchdog.beat(self.step)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps or result.stop:
                    now = time.time()
                    self._log(sums, micro_since_log, now - t_log, outputs)
                    sums, micro_since_log, t_log = {}, 0, now
                self.guard.raise_if_diverged()
                if result.stop:
                    stopped = True
                    break
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    with self.watchdog.paused():
                        self.evaluate(f"step{self.step}")
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    if self.guard.bad_in_row:  # agreed on every rank
                        self._say(
                            f"checkpoint at step {self.step} deferred: "
                            f"{len(self.guard.bad_in_row)} skipped step(s) in a row"
                        )
                    else:
                        self.save()
            self.save()  # no-op when this step was just saved
        except TrainingDiverged as e:
            self.watchdog.stop()
            tail = f"checkpoints: {self.ckpt_dir}; resume with --resume after changing the config"
            if self.saved_step >= 0:
                tail = f"newest checkpoint written: step {self.saved_step}; " + tail
            err = TrainingDiverged(f"{e}; {tail}")
            self._write_summary({"status": "diverged", "error": str(err)}, t0)
            self.logger.close()
            raise err from None
        if stopped:
            self.watchdog.stop()
            self._say(
                f"stopping at step {self.step} on SIGUSR1: checkpoint saved; resume with --resume"
            )
            self.logger.close()
            return self._write_summary({"status": "stopped", "stopped_by": "SIGUSR1"}, t0)
        with self.watchdog.paused():
            metrics = self.evaluate("final")
        self.watchdog.stop()
        self.logger.close()
        return self._write_summary({"status": "completed", "eval": metrics}, t0)

    def _write_summary(self, extra: dict[str, Any], t0: float) -> dict[str, Any]:
        summary = {
            "step": self.step,
            "out_dir": str(self.out),
            "checkpoints": str(self.ckpt_dir),
            "tensorboard": str(self.out / "tb"),
            "skipped_steps": self.guard.skipped_total,
            "train_wall_s": time.time() - t0,
            **extra,
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
                "train/skipped_steps": float(self.guard.skipped_total),
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
