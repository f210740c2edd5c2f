"""Text tower: a BERT-style encoder (transformers BertModel) sized to our tokenizer.

Built from a BertConfig (random init) or loaded from a local BERT directory (the
general-initialization ablation arm); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from transformers import BertConfig, BertModel

from medtrain.models.config import TextConfig


class TextTower(nn.Module):
    """input_ids (B, L), attention_mask (B, L) -> hidden states (B, L, C)."""

    def __init__(self, cfg: TextConfig, vocab_size: int, pad_token_id: int = 0) -> None:
        super().__init__()
        if cfg.pretrained_path:
            path = Path(cfg.pretrained_path)
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"text.pretrained_path {path} has no config.json")
            self.bert = BertModel.from_pretrained(
                path,
                add_pooling_layer=False,
                attn_implementation=cfg.attn_impl,
                local_files_only=True,
            )
            if self.bert.config.vocab_size != vocab_size:
                raise ValueError(
                    f"{path}: vocab size {self.bert.config.vocab_size} != tokenizer {vocab_size}"
                )
        else:
            bert_cfg = BertConfig(
                vocab_size=vocab_size,
                hidden_size=cfg.hidden_size,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                intermediate_size=cfg.intermediate_size,
                max_position_embeddings=cfg.max_length,
                hidden_dropout_prob=cfg.dropout,
                attention_probs_dropout_prob=cfg.dropout,
                pad_token_id=pad_token_id,
                attn_implementation=cfg.attn_impl,
            )
            self.bert = BertModel(bert_cfg, add_pooling_layer=False)
        self.out_dim: int = self.bert.config.hidden_size

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.bert.gradient_checkpointing_enable({"use_reentrant": False})
        else:
            self.bert.gradient_checkpointing_disable()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
