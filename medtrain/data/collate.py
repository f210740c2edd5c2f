"""Batching: tokenize reports, apply BERT-style MLM masking, stack images and labels."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from medtrain.data.config import MaskingConfig
from medtrain.data.errors import DataError
from medtrain.data.records import Sample

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    special_ids: Tensor,
    vocab_size: int,
    mask_id: int,
    cfg: MaskingConfig,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Return (masked_input_ids, mlm_labels); labels are -100 except at selected positions.

    Special ids and padding are never selected. At least one token is selected whenever any
    token is maskable, so the MLM loss is never an empty mean. Random draws have fixed shapes,
    so the generator advances the same way for any content.
    """
    device = input_ids.device
    special_ids = special_ids.to(device=device, dtype=input_ids.dtype)
    maskable = attention_mask.bool() & ~torch.isin(input_ids, special_ids)  # (B, L)

    def rand() -> Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=device)  # (B, L)

    selected = (rand() < cfg.mlm_probability) & maskable  # (B, L)

    # Force one selection (a random maskable position) if nothing was picked.
    score = rand().flatten().masked_fill(~maskable.flatten(), -1.0)  # (B*L,)
    forced = torch.zeros_like(selected.flatten())  # (B*L,)
    idx = score.argmax()
    forced[idx] = maskable.flatten()[idx] & ~selected.any()
    selected = selected | forced.view_as(selected)  # (B, L)

    action = rand()  # (B, L)
    to_mask = selected & (action < cfg.mask_fraction)
    to_random = (
        selected
        & (action >= cfg.mask_fraction)
        & (action < cfg.mask_fraction + cfg.random_fraction)
    )

    allowed = torch.arange(vocab_size, device=device)  # (V,)
    allowed = allowed[~torch.isin(allowed, special_ids)]  # (V - n_special,)
    if allowed.numel() == 0:
        raise ValueError("no non-special token ids to draw random replacements from")
    pick = torch.randint(allowed.numel(), input_ids.shape, generator=generator, device=device)
    random_tokens = allowed[pick].to(input_ids.dtype)  # (B, L)

    masked = input_ids.masked_fill(to_mask, mask_id)  # (B, L)
    masked = torch.where(to_random, random_tokens, masked)
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)  # (B, L)
    return masked, labels


def _derive_seed(*parts: int) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Collator:
    """Turn `Sample`s (pixel_values (1, H, W), text, labels (14,)) into a model batch."""

    def __init__(
        self, tokenizer: Any, *, max_length: int, masking: MaskingConfig, seed: int = 0
    ) -> None:
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("tokenizer needs [MASK] and [PAD] tokens for MLM collation")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.masking = masking
        self.seed = seed
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.vocab_size = len(tokenizer)
        self.mask_id = int(tokenizer.mask_token_id)
        self._calls = 0

    def _generator(self) -> torch.Generator:
        # Worker info is read at call time: __init__ runs in the main process.
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        gen = torch.Generator().manual_seed(_derive_seed(self.seed, worker, self._calls))
        self._calls += 1
        return gen

    def __call__(self, samples: list[Sample]) -> dict:
        if not samples:
            raise DataError("cannot collate an empty list of samples")
        ids = [str(s.id) for s in samples]
        texts = [s.text for s in samples]
        for sid, text in zip(ids, texts, strict=True):
            if text is None:
                raise DataError(f"sample {sid!r} has no report text to pretrain on")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"sample {sid!r} has an empty report text")
        enc = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        input_ids = enc["input_ids"].long()  # (B, L)
        attention_mask = enc["attention_mask"].long()  # (B, L)
        mlm_input_ids, mlm_labels = mask_tokens(
            input_ids,
            attention_mask,
            special_ids=self.special_ids,
            vocab_size=self.vocab_size,
            mask_id=self.mask_id,
            cfg=self.masking,
            generator=self._generator(),
        )
        try:
            pixel_values = torch.stack([s.pixel_values for s in samples]).float()  # (B,1,H,W)
            labels = torch.stack([s.labels for s in samples]).float()  # (B, 14)
        except RuntimeError as exc:
            raise DataError(f"samples {ids} have mismatched image or label shapes: {exc}") from exc
        return {
            "pixel_values": pixel_values,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mlm_input_ids": mlm_input_ids,
            "mlm_labels": mlm_labels,
            "labels": labels,
            "ids": ids,
        }
