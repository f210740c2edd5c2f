"""Batching: tokenize reports and stack images and labels (Collator, in loader workers); BERT-style
MLM masking of the batch (Masker, in the training process).

Masking is apart from collation so that its random stream is one torch.Generator of the training
process, saved with every checkpoint (per rank): the masks of a resumed run then equal the
uninterrupted run's whatever the number of loader workers, and nothing is re-derived from a step.
"""

from __future__ import annotations

import base64
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


class Masker:
    """MLM masking of collated batches from one generator whose state checkpoints carry.

    batch (input_ids (B, L), attention_mask (B, L), ...) -> the same dict plus mlm_input_ids
    (B, L) and mlm_labels (B, L). Call it in the process that trains, in batch order."""

    def __init__(self, tokenizer: Any, *, masking: MaskingConfig, seed: int = 0) -> None:
        if tokenizer.mask_token_id is None:
            raise ValueError("tokenizer needs a [MASK] token for MLM masking")
        self.masking = masking
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.vocab_size = len(tokenizer)
        self.mask_id = int(tokenizer.mask_token_id)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        mlm_input_ids, mlm_labels = mask_tokens(
            batch["input_ids"],
            batch["attention_mask"],
            special_ids=self.special_ids,
            vocab_size=self.vocab_size,
            mask_id=self.mask_id,
            cfg=self.masking,
            generator=self.generator,
        )
        return {**batch, "mlm_input_ids": mlm_input_ids, "mlm_labels": mlm_labels}

    def state(self) -> str:
        """The generator state, JSON-able (base64 of its bytes)."""
        return base64.b64encode(self.generator.get_state().numpy().tobytes()).decode("ascii")

    def load_state(self, state: str) -> None:
        raw = bytearray(base64.b64decode(state))
        self.generator.set_state(torch.frombuffer(raw, dtype=torch.uint8).clone())


class Collator:
    """Turn `Sample`s (pixel_values (1, H, W), text, labels (14,)) into a model batch without
    the MLM inputs (Masker adds those in the training process)."""

    def __init__(self, tokenizer: Any, *, max_length: int) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer needs a [PAD] token for collation")
        self.tokenizer = tokenizer
        self.max_length = max_length

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
        try:
            pixel_values = torch.stack([s.pixel_values for s in samples]).float()  # (B,1,H,W)
            labels = torch.stack([s.labels for s in samples]).float()  # (B, 14)
        except RuntimeError as exc:
            raise DataError(f"samples {ids} have mismatched image or label shapes: {exc}") from exc
        return {
            "pixel_values": pixel_values,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "ids": ids,  # sample ids: the loss-spike detector logs them
        }
