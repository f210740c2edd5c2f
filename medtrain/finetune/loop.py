"""The fine-tuning loop: backbone of a pretraining run + a task head on the DeepSpeed engine.

Mirrors train/loop.py (the pretraining Trainer): one entry point for one process and for
`deepspeed` launches; ZeRO / bf16 (train.precision auto) / warmup+cosine / clipping from the
run's DeepSpeed JSON; StepGuard (non-finite steps skipped, divergence stops the run);
MetricsLogger (tensorboard + metrics.jsonl); CheckpointStore (train.ckpt_every, keep_last;
`resume=True` continues from the latest checkpoint with the data position and RNG streams, a run
directory holding checkpoints is never overwritten without it). The final evaluation runs on
rank 0 on the replicated module (ZeRO 0-2; stage 3 is not supported here) and writes the files of
finetune/evaluate.py. Run directory: config.yaml, tokenizer/, task.json, checkpoints/, tb/,
metrics.jsonl, eval/, summary.json.

`finetune(cfg)` may be called many times in one process (the benchmark script does): nothing is
kept between calls except the process group, which init_distributed reuses.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import torch

from medtrain.config import RunConfig, dump_config
from medtrain.finetune.backbone import load_backbone
from medtrain.finetune.data import TrainStream, load_split, read_train, to_device
from medtrain.finetune.engine import finetune_groups
from medtrain.finetune.evaluate import evaluate_split
from medtrain.finetune.tasks import TASKS
from medtrain.train.engine import build_engine
from medtrain.train.errors import TrainingDiverged
from medtrain.train.guard import StepGuard, weights_finite
from medtrain.train.loop import note_text_path, start_run
from medtrain.train.metrics import MetricsLogger
from medtrain.train.state import reseed, rng_state, set_rng_state

log = logging.getLogger(__name__)


class FinetuneTrainer:
    def __init__(self, cfg: RunConfig, *, resume: bool) -> None:
        self.cfg = cfg
        self.rank, self.world, self.out, self.store = start_run(cfg, resume=resume)
        self.ckpt_dir = self.out / "checkpoints"
        backbone, self.tokenizer, _ = load_backbone(cfg)  # sets cfg.model from the init run
        self.task = TASKS[cfg.finetune.task](cfg, self.tokenizer)
        ft, data = cfg.finetune, cfg.data
        # The label / answer set is the task's schema, from the whole training split (equal for
        # every label fraction and seed, so their metrics cover the same labels); the fraction
        # limits the labelled examples the run trains on. A resumed run keeps its task.json.
        task_json = self.out / "task.json"
        state = json.loads(task_json.read_text()) if resume and task_json.is_file() else None
        _, self.train_records = read_train(cfg, self.task, state)
        self.eval_records, _ = load_split(data, ft.eval_split, self.task.keep)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.out / "config.yaml")
            self.tokenizer.save_pretrained(self.out / "tokenizer")
            task_json.write_text(json.dumps(self.task.state(), indent=2))
            note_text_path(cfg.data)
        self.model = self.task.build_model(backbone)
        train = cfg.train
        groups = finetune_groups(
            self.model,
            self.task.trainable_groups(self.model),
            train.lr,
            train.lr * ft.head_lr_mult,
            train.weight_decay,
        )
        found = self.store.find() if resume else None
        self.engine, _, _ = build_engine(
            self.model,
            train,
            self.world,
            overrides=self.store.ds_config_overrides(found),
            groups=groups,
        )
        self.dtype = torch.bfloat16 if train.precision == "bf16" else torch.float32
        self.step, client, self.rank_state = 0, None, None
        self.resumed_step: int | None = None
        if found is not None:
            for note in found.notes:
                self._say(note)
            self.store.load(self.engine, found)
            self.step, client, self.rank_state = found.step, found.state, found.rank_state
            self.resumed_step = found.step
            self._say(f"resumed from {self.ckpt_dir / found.tag} at step {self.step}")
        elif resume:
            self._say(f"no checkpoint under {self.ckpt_dir}: starting from step 0")
        self.data = TrainStream(
            self.task.dataset(self.train_records, data.train_split),
            batch_size=train.micro_batch_size,
            rank=self.rank,
            world=self.world,
            seed=train.seed,
            collate=self.task.collate,
            num_workers=data.num_workers,
        )
        if client is not None:
            self.data.restore(client)
        self.logger = MetricsLogger(
            self.out, enabled=self.rank == 0, resumed_step=self.resumed_step
        )
        self.guard = StepGuard.for_run(
            self.cfg.train, device=self.engine.device, out_dir=self.out, rank=self.rank
        )
        self.guard.install(self.engine.optimizer)
        self.saved_step = -1

    def _say(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)

    def save(self) -> None:
        if self.saved_step == self.step:
            return
        if not weights_finite(self.engine.module.parameters(), self.engine.device):
            raise TrainingDiverged(
                f"parameters are non-finite at step {self.step}: checkpoint not written"
            )
        state = {"step": self.step, "world_size": self.world, **self.data.state(self.world)}
        self.store.save(self.engine, step=self.step, state=state, rank_state={"rng": rng_state()})
        self.saved_step = self.step

    def _restore_streams(self) -> None:
        if self.resumed_step is None:
            return
        if self.rank_state is not None and "rng" in self.rank_state:
            set_rng_state(self.rank_state["rng"])
        else:
            reseed(self.cfg.train.seed, self.rank, self.step)

    def _local_grads(self) -> list[torch.Tensor]:
        if self.cfg.train.zero_stage != 0:
            return []
        return [p.grad for p in self.engine.module.parameters() if p.grad is not None]

    def fit(self) -> dict[str, Any]:
        train, engine = self.cfg.train, self.engine
        accum = engine.gradient_accumulation_steps()
        self._say(
            f"medtrain finetune {self.task.name}: {self.world} rank(s), "
            f"{len(self.train_records)} train ({self.cfg.finetune.label_fraction:g} of the "
            f"split) / {len(self.eval_records)} {self.cfg.finetune.eval_split}, "
            f"init {self.cfg.finetune.init_weights}, mode {self.cfg.finetune.mode}, "
            f"{train.steps} steps -> {self.out}"
        )
        batches = self.data.batches()
        pending = next(batches) if self.step < train.steps else None
        t0 = t_log = time.time()
        loss_sum, n_micro = 0.0, 0
        engine.train()
        self._restore_streams()
        try:
            while self.step < train.steps:
                step_loss, ids = None, []
                for i in range(accum):
                    batch, pending = pending if pending is not None else next(batches), None
                    ids += list(batch.get("ids", []))
                    batch = to_device(batch, engine.device, self.dtype, self.cfg.data.image)
                    loss = engine(batch)["loss"]
                    engine.backward(loss)
                    loss = loss.detach().float()
                    step_loss = loss if step_loss is None else step_loss + loss
                    loss_sum, n_micro = loss_sum + float(loss), n_micro + 1
                    if i == accum - 1:
                        mean_loss, stop = self.guard.before_step(
                            step_loss / accum, grads=self._local_grads(), stop=False
                        )
                    engine.step()
                self.step += 1
                result = self.guard.after_step(
                    self.step, mean_loss, applied=engine.was_step_applied(), stop=stop, ids=ids
                )
                if self.step % train.log_every == 0 or self.step == train.steps:
                    now = time.time()
                    gn = engine.get_global_grad_norm()
                    self.logger.log(
                        self.step,
                        {
                            "loss/total": loss_sum / max(n_micro, 1),
                            "train/lr": engine.get_lr()[0],
                            "train/grad_norm": float(gn) if gn is not None else float("nan"),
                            "train/skipped_steps": float(self.guard.skipped_total),
                            "perf/samples_per_s": n_micro
                            * train.micro_batch_size
                            * self.world
                            / max(now - t_log, 1e-9),
                            "data/epoch": float(self.data.epoch),
                        },
                    )
                    loss_sum, n_micro, t_log = 0.0, 0, now
                self.guard.raise_if_diverged()
                if result.stop:
                    break
                at_ckpt = train.ckpt_every and self.step % train.ckpt_every == 0
                if at_ckpt and not self.guard.bad_in_row:  # deferred while steps are skipped
                    self.save()
            self.save()
        except TrainingDiverged as e:
            self.logger.close()
            self._write_summary({"status": "diverged", "error": str(e)}, t0, 0.0)
            raise TrainingDiverged(f"{e}; checkpoints: {self.ckpt_dir}") from None
        wall = time.time() - t0
        result, failed = self._final_eval()
        if failed is not None:  # every rank: rank 0 re-raises its own error, the others say why
            self.logger.close()
            self._write_summary({"status": "eval_failed", "error": str(failed)}, t0, wall)
            if isinstance(failed, BaseException):
                raise failed
            raise RuntimeError(f"the final evaluation failed on rank 0: {failed}")
        self.logger.close()
        summary = self._write_summary({"status": "completed"}, t0, wall)
        if result is not None:
            summary["eval"] = result
        return summary

    def _final_eval(self) -> tuple[dict[str, Any] | None, BaseException | str | None]:
        """Rank 0 evaluates; its failure is broadcast instead of leaving the other ranks at a
        barrier until the process-group timeout. -> (eval JSON on rank 0, None) on success;
        (None, the exception) on rank 0 and (None, its message) elsewhere on failure."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = evaluate_split(
                    self.task,
                    self.engine.module,
                    self.train_records,
                    self.eval_records,
                    self.cfg.finetune.eval_split,
                    self.out,
                    batch_size=max(self.cfg.train.micro_batch_size, 1),
                )
                self.logger.log(
                    self.step,
                    {f"eval/{k}": v for k, v in result["metrics"].items() if isinstance(v, float)},
                    echo=False,
                )
            except Exception as e:  # noqa: BLE001 -- shared with every rank, then re-raised
                error = e
        message = [None if error is None else f"{type(error).__name__}: {error}"]
        # also the end-of-run barrier
        torch.distributed.broadcast_object_list(message, src=0, device=self.engine.device)
        if message[0] is None:
            return result, None
        return None, error if error is not None else message[0]

    def _write_summary(self, extra: dict[str, Any], t0: float, wall: float) -> dict[str, Any]:
        ft = self.cfg.finetune
        summary = {
            "task": self.task.name,
            "step": self.step,
            "out_dir": str(self.out),
            "checkpoints": str(self.ckpt_dir),
            "tensorboard": str(self.out / "tb"),
            "init": ft.init,
            "init_weights": ft.init_weights,
            "mode": ft.mode,
            "label_fraction": ft.label_fraction,
            "fraction_seed": ft.fraction_seed,
            "n_train": len(self.train_records),
            "n_eval": len(self.eval_records),
            "skipped_steps": self.guard.skipped_total,
            "train_wall_s": wall,
            "total_wall_s": time.time() - t0,
            "eval_file": str(self.out / "eval" / f"{self.task.name}-{ft.eval_split}.json"),
            **extra,
        }
        if self.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def finetune(cfg: RunConfig, *, resume: bool = False) -> dict[str, Any]:
    """Fine-tune and evaluate; returns summary.json's content (+ "eval": the eval JSON on rank
    0). `cfg` is modified in place (model and tokenizer.path from finetune.init)."""
    trainer = FinetuneTrainer(cfg, resume=resume)
    try:
        return trainer.fit()
    finally:
        trainer.logger.close()
        trainer.engine.destroy()  # frees DeepSpeed's hooks/buffers before the next run
