"""Run the zero-shot evaluation of a pretraining model on a held-out split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from medtrain.eval.config import EvalConfig
from medtrain.eval.prompts import FINDING_PROMPTS
from medtrain.eval.retrieval import recall_at_k
from medtrain.eval.zeroshot import zero_shot_auc

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
) -> tuple[Tensor, Tensor, Tensor]:
    """`Sample`s -> image_emb (N, E), text_emb (N, E), labels (N, 14), on the CPU in fp32.

    `on_device` is the pipeline's device-side preprocessing (Pipeline.on_device), so evaluation
    sees the images exactly as training does.
    """
    dtype = _model_dtype(model)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=list
    )
    imgs, txts, labels = [], [], []
    for samples in loader:
        pixels = torch.stack([s.pixel_values for s in samples])  # (b, 1, S, S)
        pixels = on_device({"pixel_values": pixels}, device, dtype)["pixel_values"]
        _, img = model.encode_image(pixels)  # (b, E)
        tok = _tokenize(tokenizer, [s.text for s in samples], max_length, device)
        _, txt = model.encode_text(tok["input_ids"], tok["attention_mask"])
        imgs.append(img.float().cpu())
        txts.append(txt.float().cpu())
        labels.append(torch.stack([s.labels for s in samples]))
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
    """Retrieval R@K both ways and zero-shot AUC per finding (flat dict, `auc/<finding>`) over a
    data set of `Sample`s (the pipeline's eval stream, `Pipeline.eval()`)."""
    if max_samples and len(dataset) > max_samples:
        dataset = Subset(dataset, range(max_samples))
    was_training = model.training
    model.eval()
    try:
        img, txt, labels = embed_dataset(
            model,
            dataset,
            tokenizer,
            batch_size=cfg.batch_size,
            max_length=max_length,
            device=device,
            on_device=on_device,
        )
        prompts = embed_prompts(model, tokenizer, max_length=max_length, device=device)
    finally:
        model.train(was_training)
    if cfg.findings:
        prompts = {k: v for k, v in prompts.items() if k in cfg.findings}
    metrics: dict[str, float] = {"n": float(len(img))}
    metrics.update(recall_at_k(img, txt, tuple(cfg.recall_at)))
    metrics.update({f"auc/{k}": v for k, v in zero_shot_auc(img, labels, prompts).items()})
    return metrics
