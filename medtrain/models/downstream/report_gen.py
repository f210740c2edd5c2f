"""Report generator: the backbone's vision tower + a BERT decoder with cross-attention to it.

image (B, 1, S, S) -> vision tower -> tokens (B, N, Cv) -> LayerNorm + Linear -> (B, N, H)
-> cross-attention of a transformers `BertLMHeadModel(is_decoder=True, add_cross_attention=True)`
whose self-attention, feed-forward and embeddings start from our text tower (a transformers
BertModel) where names and shapes allow (the first `decoder_layers` layers; position embeddings
row by row), and whose LM head starts from the pretraining MLM head (transform + decoder; not
tied to the word embeddings, as the MLM head). Cross-attention and the image projection start
fresh.

Training is teacher-forced: `[CLS] report [SEP]` in, next-token cross-entropy over the real
tokens (padding labelled -100). Decoding goes through transformers' `generate` (greedy when
num_beams == 1, else beam search with length_penalty; no_repeat_ngram_size either way): it starts
from [CLS], stops at [SEP], and expands `encoder_hidden_states` / `encoder_attention_mask` per
beam itself (GenerationMixin._expand_inputs_for_generation expands every tensor model kwarg).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig, BertLMHeadModel
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from medtrain.models.medvlp import MedVLP

# (pretraining MLMHead parameter, BertLMHeadModel parameter)
_MLM_HEAD_MAP = (
    ("transform.0.weight", "cls.predictions.transform.dense.weight"),
    ("transform.0.bias", "cls.predictions.transform.dense.bias"),
    ("transform.2.weight", "cls.predictions.transform.LayerNorm.weight"),
    ("transform.2.bias", "cls.predictions.transform.LayerNorm.bias"),
    ("decoder.weight", "cls.predictions.decoder.weight"),
    ("decoder.bias", "cls.predictions.decoder.bias"),
)


def decoder_config(
    text_cfg: BertConfig, num_layers: int, max_positions: int, special: dict[str, int]
) -> BertConfig:
    """Decoder BertConfig: width, heads, FFN, vocabulary and dropout of the text tower."""
    return BertConfig(
        vocab_size=text_cfg.vocab_size,
        hidden_size=text_cfg.hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=text_cfg.num_attention_heads,
        intermediate_size=text_cfg.intermediate_size,
        hidden_act=text_cfg.hidden_act,
        hidden_dropout_prob=text_cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=text_cfg.attention_probs_dropout_prob,
        max_position_embeddings=max(max_positions, text_cfg.max_position_embeddings),
        type_vocab_size=text_cfg.type_vocab_size,
        layer_norm_eps=text_cfg.layer_norm_eps,
        is_decoder=True,
        add_cross_attention=True,
        tie_word_embeddings=False,
        pad_token_id=special["pad"],
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
    )


def copy_matching(dst: nn.Module, src_state: dict[str, Tensor], names: dict[str, str]) -> list[str]:
    """dst[name] <- src_state[src name] for each pair whose shapes match; a larger destination
    keeps its extra leading-dimension rows (position embeddings). Returns the names copied."""
    dst_state = dst.state_dict()
    copied = []
    with torch.no_grad():
        for d, s in names.items():
            if d not in dst_state or s not in src_state:
                continue
            want, have = dst_state[d], src_state[s]
            if want.shape == have.shape:
                want.copy_(have)
            elif want.dim() == have.dim() and want.shape[1:] == have.shape[1:]:
                n = min(want.shape[0], have.shape[0])
                want[:n].copy_(have[:n])
            else:
                continue
            copied.append(d)
    return copied


class ReportGenerator(nn.Module):
    """forward(batch) -> {"loss", "logits" (B, L, V)}; generate(pixel_values, ...) -> ids."""

    def __init__(
        self,
        backbone: MedVLP,
        *,
        num_layers: int,
        max_positions: int,
        special: dict[str, int],
        frozen_vision: bool = False,
    ) -> None:
        super().__init__()
        # Only the vision tower is kept: text tower / fusion / projections would be parameters
        # without gradients under the engine.
        self.vision, self.frozen = backbone.vision, frozen_vision
        text_bert = backbone.text.bert
        self.config = decoder_config(text_bert.config, num_layers, max_positions, special)
        self.decoder = BertLMHeadModel(self.config)
        width, c_img = self.config.hidden_size, backbone.vision.out_dim
        self.image_proj = nn.Sequential(nn.LayerNorm(c_img), nn.Linear(c_img, width))
        self.copied = self._init_from(backbone, num_layers)
        if frozen_vision:
            self.vision.requires_grad_(False)

    def _init_from(self, backbone: MedVLP, num_layers: int) -> list[str]:
        """Embeddings, first `num_layers` layers' self-attention/FFN of the text tower and the
        MLM head into the decoder; returns the decoder parameter names initialised."""
        text_state = backbone.text.bert.state_dict()
        names = {f"bert.{k}": k for k in text_state if k.startswith("embeddings.")}
        for k in text_state:
            parts = k.split(".")  # encoder.layer.<i>.(attention|intermediate|output).…
            if parts[:2] == ["encoder", "layer"] and int(parts[2]) < num_layers:
                names[f"bert.{k}"] = k
        copied = copy_matching(self.decoder, text_state, names)
        mlm = {f"mlm.{k}": v for k, v in backbone.mlm_head.state_dict().items()}
        return copied + copy_matching(self.decoder, mlm, {d: f"mlm.{s}" for s, d in _MLM_HEAD_MAP})

    def train(self, mode: bool = True) -> ReportGenerator:
        super().train(mode)
        if self.frozen:  # a frozen vision tower never trains (no dropout, no drop-path)
            self.vision.eval()
        return self

    def encode(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """-> image states (B, N, H) for cross-attention, all-ones mask (B, N)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self.vision(pixel_values)  # (B, N, Cv)
        states = self.image_proj(tokens)  # (B, N, H)
        mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)
        return states, mask

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        states, img_mask = self.encode(batch["pixel_values"])
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, L): [CLS] … [SEP] [PAD]…
        logits = self.decoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=states,
            encoder_attention_mask=img_mask,
            use_cache=False,
        ).logits  # (B, L, V)
        out = {"logits": logits}
        if "labels" in batch:  # (B, L), -100 on padding; position t predicts token t + 1
            out["loss"] = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1),
                batch["labels"][:, 1:].flatten(),
                ignore_index=-100,
            )
        return out

    @torch.no_grad()
    def generate(
        self,
        pixel_values: Tensor,
        *,
        max_new_tokens: int,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
    ) -> Tensor:
        """Token ids (B, T) starting with [CLS], through transformers' generate (greedy when
        num_beams == 1, beam search otherwise); finished rows are padded with [PAD]."""
        states, img_mask = self.encode(pixel_values)
        special = self.config
        start = torch.full(
            (states.shape[0], 1), special.bos_token_id, dtype=torch.long, device=states.device
        )
        gen: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_beams": num_beams,
            "do_sample": False,
            "no_repeat_ngram_size": no_repeat_ngram_size,
            "bos_token_id": special.bos_token_id,
            "eos_token_id": special.eos_token_id,
            "pad_token_id": special.pad_token_id,
        }
        if num_beams > 1:
            gen |= {"length_penalty": length_penalty, "early_stopping": True}
        # generate() would create a self-attention-only DynamicCache for this decoder-only model
        # (transformers 5.x), which BERT's cross-attention cannot use: pass the cache it expects.
        cache = EncoderDecoderCache(
            DynamicCache(config=self.config), DynamicCache(config=self.config)
        )
        return self.decoder.generate(
            input_ids=start,
            cache=cache,
            attention_mask=torch.ones_like(start),
            encoder_hidden_states=states,
            encoder_attention_mask=img_mask,
            **gen,
        )


def decode_reports(tokenizer: Any, ids: Tensor) -> list[str]:
    """Generated ids (B, T) -> texts: each row up to its first [SEP], without [CLS] / [SEP] /
    [PAD] / [MASK] ([PHI] placeholders stay, as in the references), WordPiece pieces joined and
    spacing before punctuation cleaned up by the tokenizer."""
    drop = {
        tokenizer.cls_token_id,
        tokenizer.pad_token_id,
        tokenizer.mask_token_id,
        tokenizer.bos_token_id,
    } - {None}
    eos = tokenizer.sep_token_id
    texts = []
    for row in ids.tolist():
        if row and row[0] in drop:
            row = row[1:]
        if eos in row:
            row = row[: row.index(eos)]
        row = [t for t in row if t not in drop]
        text = tokenizer.decode(row, skip_special_tokens=False, clean_up_tokenization_spaces=True)
        texts.append(" ".join(text.split()))
    return texts
