"""Run the zero-shot evaluation of a pretraining model on a held-out split.

Bad eval data never aborts an evaluation (it runs after training): a sample whose members do not
decode (DataError from the data set, e.g. a malformed eval shard: truncated tar, bad PNG, bad
json) is skipped, logged and counted, and so are the shards the data set could not index
(`dataset.skipped`, ShardIndexDataset); the metrics say how many (`skipped`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from medtrain.data.errors import DataError
from medtrain.eval.config import EvalConfig
from medtrain.eval.prompts import FINDING_PROMPTS
from medtrain.eval.retrieval import label_recall_at_k, recall_at_k
from medtrain.eval.zeroshot import zero_shot_auc

log = logging.getLogger(__name__)

# (batch, device, dtype) -> batch on the device: medtrain.data.pipeline.Pipeline.on_device
OnDevice = Callable[[dict[str, Any], torch.device, torch.dtype], dict[str, Any]]


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def _tokenize(tokenizer, texts: list[str], max_length: int, device) -> dict[str, Tensor]:
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {
        "input_ids": enc["input_ids"].to(device),
        "attention_mask": enc["attention_mask"].to(device),
    }


def _batches(dataset: Dataset, batch_size: int, skipped: list[str]) -> Iterator[list[Any]]:
    """Lists of `batch_size` samples in order; an item that raises DataError is skipped and its
    reason appended to `skipped` (a map-style data set in this process: no DataLoader, whose
    batches fail as a whole)."""
    batch: list[Any] = []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        try:
            batch.append(dataset[i])
        except DataError as e:
            log.warning("evaluation: skipping unreadable sample %d: %s", i, e)
            skipped.append(str(e))
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    tokenizer,
    *,
    batch_size: int,
    max_length: int,
    device: torch.device,
    on_device: OnDevice,
    skipped: list[str] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """`Sample`s -> image_emb (N, E), text_emb (N, E), labels (N, 14), on the CPU in fp32.

    `on_device` is the pipeline's device-side preprocessing (Pipeline.on_device), so evaluation
    sees the images exactly as training does. Samples that raise DataError are skipped; their
    reasons go to `skipped` when given.
    """
    dtype = _model_dtype(model)
    imgs, txts, labels = [], [], []
    for samples in _batches(dataset, batch_size, [] if skipped is None else skipped):
        pixels = torch.stack([s.pixel_values for s in samples])  # (b, 1, S, S)
        pixels = on_device({"pixel_values": pixels}, device, dtype)["pixel_values"]
        _, img = model.encode_image(pixels)  # (b, E)
        tok = _tokenize(tokenizer, [s.text for s in samples], max_length, device)
        _, txt = model.encode_text(tok["input_ids"], tok["attention_mask"])
        imgs.append(img.float().cpu())
        txts.append(txt.float().cpu())
        labels.append(torch.stack([s.labels for s in samples]))
    if not imgs:
        raise DataError(f"evaluation: no readable sample among {len(dataset)}")  # type: ignore[arg-type]
    return torch.cat(imgs), torch.cat(txts), torch.cat(labels)


@torch.no_grad()
def embed_prompts(
    model: nn.Module, tokenizer, *, max_length: int, device: torch.device
) -> dict[str, tuple[Tensor, Tensor]]:
    """finding -> (present, absent) prompt-ensemble embeddings (E,), unit norm, fp32 CPU."""
    out = {}
    for finding, (present, absent) in FINDING_PROMPTS.items():
        pair = []
        for prompts in (present, absent):
            tok = _tokenize(tokenizer, list(prompts), max_length, device)
            _, emb = model.encode_text(tok["input_ids"], tok["attention_mask"])  # (P, E)
            pair.append(F.normalize(emb.float().mean(0), dim=0).cpu())
        out[finding] = (pair[0], pair[1])
    return out


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    tokenizer,
    cfg: EvalConfig,
    *,
    max_length: int,
    device: torch.device,
    on_device: OnDevice,
    max_samples: int = 0,
) -> dict[str, float]:
    """Retrieval R@K both ways (exact pair `i2t_R@k`, and same finding set `i2t_label_R@k` with
    its chance level `label_R@k/chance`: eval/retrieval.py) and zero-shot AUC per finding (flat
    dict, `auc/<finding>`, macro mean `auc/macro`) over a
    data set of `Sample`s (the pipeline's eval stream, `Pipeline.eval()`); `skipped` counts the
    unreadable samples and shards left out (module docstring), `n` the samples evaluated."""
    index_skipped = (
        sum(getattr(dataset, "skipped", {}).values())
        if isinstance(getattr(dataset, "skipped", None), dict)
        else 0
    )
    if max_samples and len(dataset) > max_samples:
        dataset = Subset(dataset, range(max_samples))
    was_training = model.training
    model.eval()
    bad: list[str] = []
    try:
        img, txt, labels = embed_dataset(
            model,
            dataset,
            tokenizer,
            batch_size=cfg.batch_size,
            max_length=max_length,
            device=device,
            on_device=on_device,
            skipped=bad,
        )
        prompts = embed_prompts(model, tokenizer, max_length=max_length, device=device)
    finally:
        model.train(was_training)
    if cfg.findings:
        prompts = {k: v for k, v in prompts.items() if k in cfg.findings}
    metrics: dict[str, float] = {"n": float(len(img)), "skipped": float(len(bad) + index_skipped)}
    metrics.update(recall_at_k(img, txt, tuple(cfg.recall_at)))
    metrics.update(label_recall_at_k(img, txt, labels, tuple(cfg.recall_at)))
    metrics.update({f"auc/{k}": v for k, v in zero_shot_auc(img, labels, prompts).items()})
    return metrics
