"""The pretraining loop: data -> MedVLP -> losses -> DeepSpeed engine, with eval and checkpoints.

Same entry point for one process (`medtrain pretrain`) and for `deepspeed` launches over many
ranks/nodes. Checkpoints hold the DeepSpeed state plus the data position so `--resume`
continues with exactly the samples not yet seen: data.format=records stores (epoch,
micro-batches consumed) per rank (same world size on resume); data.format=shards stores the
streaming loader's world-size-free state (medtrain/data/stream.py), so a run may resume on a
different number of ranks.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from medtrain.config import RunConfig, dump_config
from medtrain.data.collate import Collator
from medtrain.data.dataset import PairDataset, ResumableSampler, eval_dataset
from medtrain.data.errors import DataError
from medtrain.data.images import ImageConfig, batch_transform
from medtrain.data.stream import ShardLoader, ShardStream, merge_states
from medtrain.data.tokenizer import load_tokenizer
from medtrain.eval.runner import evaluate
from medtrain.losses import compute_losses
from medtrain.models.pretrain import MedVLP, count_parameters
from medtrain.train.engine import build_engine, init_distributed
from medtrain.train.metrics import MetricsLogger, peak_memory_gb

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_device(
    batch: dict[str, Any], device: torch.device, dtype: torch.dtype, image: ImageConfig
) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            # Device-side preprocessing (Gaussian LCN with image.lcn_device=gpu) runs in fp32.
            out[k] = batch_transform(v, image).to(dtype) if k == "pixel_values" else v
        else:
            out[k] = v
    return out


class _Position:
    """Where the data stream is: epoch and micro-batches of it this rank has consumed."""

    def __init__(self, epoch: int = 0, micro: int = 0) -> None:
        self.epoch, self.micro = epoch, micro

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "micro": self.micro}


def _batches(dataset, sampler: ResumableSampler, collator, pos: _Position, workers: int):
    """Endless micro-batches across epochs, advancing `pos` as they are consumed."""
    while True:
        sampler.set_position(pos.epoch, pos.micro)
        loader = DataLoader(
            dataset,
            batch_size=sampler.batch_size,
            sampler=sampler,
            collate_fn=collator,
            num_workers=workers,
            drop_last=True,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
        for batch in loader:
            pos.micro += 1
            yield batch
        pos.epoch, pos.micro = pos.epoch + 1, 0


def pretrain(cfg: RunConfig, *, resume: bool = False) -> dict[str, Any]:
    rank, world = init_distributed()
    seed_everything(cfg.train.seed + rank)
    out = Path(cfg.train.out_dir)
    ckpt_dir = out / "checkpoints"
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    size, max_len = cfg.model.vision.img_size, cfg.model.text.max_length
    records = cfg.data.format == "records"
    train_ds = PairDataset(cfg.data, cfg.data.train_split, size) if records else None
    eval_ds = eval_dataset(cfg.data, size)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
        tokenizer.save_pretrained(out / "tokenizer")

    model = MedVLP(cfg.model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if cfg.train.activation_checkpointing:
        model.set_grad_checkpointing(True)
    engine, _, _ = build_engine(model, cfg.train, world)
    dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32
    accum = engine.gradient_accumulation_steps()

    pos, step, stream_state = _Position(), 0, None
    if resume and (ckpt_dir / "latest").is_file():
        path, client = engine.load_checkpoint(str(ckpt_dir))
        step = client["step"]
        if records:
            pos = _Position(**client["data"][str(rank)])
        elif "stream" not in client:
            raise DataError(f"{path} holds no streaming-loader state (not trained from shards)")
        else:
            stream_state = client["stream"]
        if rank == 0:
            print(f"resumed from {path} at step {step}", flush=True)
    elif resume and rank == 0:
        print(f"no checkpoint under {ckpt_dir}: starting from step 0", flush=True)

    collator = Collator(
        tokenizer,
        max_length=max_len,
        masking=cfg.masking,
        seed=cfg.train.seed * 1000 + rank * 7919 + step,
    )
    loader = None
    if records:
        sampler = ResumableSampler(
            len(train_ds),
            batch_size=cfg.train.micro_batch_size,
            rank=rank,
            world=world,
            seed=cfg.train.seed,
        )
        batches = _batches(train_ds, sampler, collator, pos, cfg.data.num_workers)
        n_train = len(train_ds)
    else:
        stream = ShardStream(
            cfg.data.shards,
            image_size=size,
            image=cfg.data.image,
            seed=cfg.train.seed,
            rank=rank,
            world=world,
            buffer=cfg.data.shuffle_buffer,
            state=stream_state,
        )
        loader = ShardLoader(
            stream,
            batch_size=cfg.train.micro_batch_size,
            collate_fn=collator,
            num_workers=cfg.data.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        batches = iter(loader)  # endless
        n_train = stream.samples_per_epoch
    logger = MetricsLogger(out, enabled=rank == 0)
    if rank == 0:
        n = count_parameters(model)
        print(
            f"medtrain pretrain: {world} rank(s), {n_train} train / {len(eval_ds)} eval "
            f"pairs, {n['total'] / 1e6:.1f}M params, global batch "
            f"{engine.train_batch_size()}, {cfg.train.steps} steps -> {out}",
            flush=True,
        )

    def run_eval(tag: str) -> dict[str, float]:
        metrics = evaluate(
            engine.module,
            eval_ds,
            tokenizer,
            cfg.eval,
            max_length=max_len,
            device=engine.device,
            max_samples=cfg.data.max_eval_samples,
        )
        if rank == 0:
            (out / "eval").mkdir(exist_ok=True)
            (out / "eval" / f"{tag}.json").write_text(json.dumps(metrics, indent=2))
            logger.log(step, {f"eval/{k}": v for k, v in metrics.items()})
        return metrics

    def save() -> None:
        client: dict[str, Any] = {"step": step, "world_size": world}
        gathered: list[Any] = [None] * world
        if records:
            torch.distributed.all_gather_object(gathered, pos.state())
            client["data"] = {str(r): p for r, p in enumerate(gathered)}
        else:
            torch.distributed.all_gather_object(gathered, loader.state_dict())
            client["stream"] = merge_states(gathered)
        engine.save_checkpoint(str(ckpt_dir), tag=f"step{step}", client_state=client)

    t0 = t_log = time.time()
    sums: dict[str, float] = {}
    seen = 0
    engine.train()
    while step < cfg.train.steps:
        for _ in range(accum):
            batch = _to_device(next(batches), engine.device, dtype, cfg.data.image)
            outputs = engine(batch, with_mlm=cfg.loss.mlm_weight > 0)
            losses = compute_losses(outputs, cfg.loss)
            engine.backward(losses["loss"])
            engine.step()
            for k, v in losses.items():  # summed on device; read back only when logging
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            seen += batch["pixel_values"].shape[0] * world
        step += 1
        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            now = time.time()
            n_micro = accum * (
                cfg.train.log_every
                if step % cfg.train.log_every == 0
                else step % cfg.train.log_every
            )
            scalars = {
                f"loss/{'total' if k == 'loss' else k}": float(v) / n_micro for k, v in sums.items()
            }
            gn = engine.get_global_grad_norm()
            scalars.update(
                {
                    "train/lr": engine.get_lr()[0],
                    "train/grad_norm": float(gn) if gn is not None else float("nan"),
                    "train/logit_scale": outputs["logit_scale"].item(),
                    "perf/samples_per_s": seen / (now - t_log),
                    "perf/peak_memory_gb": peak_memory_gb(),
                }
            )
            if loader is not None:  # this rank's skipped shard members since the start
                counters = loader.state.counters
                scalars["data/corrupt"] = counters["corrupt"] + counters["rejected"]
                scalars["data/epoch"] = loader.state.epoch
            logger.log(step, scalars)
            sums, seen, t_log = {}, 0, now
        if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < cfg.train.steps:
            run_eval(f"step{step}")
        if cfg.train.ckpt_every and step % cfg.train.ckpt_every == 0:
            save()
    if not cfg.train.ckpt_every or step % cfg.train.ckpt_every:
        save()
    metrics = run_eval("final")
    wall = time.time() - t0
    logger.close()
    summary = {
        "step": step,
        "out_dir": str(out),
        "checkpoints": str(ckpt_dir),
        "tensorboard": str(out / "tb"),
        "eval": metrics,
        "train_wall_s": wall,
    }
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
