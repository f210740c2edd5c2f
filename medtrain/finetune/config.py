"""FinetuneConfig: what a downstream run adds to a RunConfig (light: no torch).

A fine-tuning run is a RunConfig (data, train, eval, ...) plus this section. The architecture
and the tokenizer come from the pretraining run named by `init` (its config.yaml and tokenizer/);
`init_weights` says whether its weights are loaded ("pretrained") or the same architecture starts
from random initialization ("random", the baseline arm of every comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TASKS = ("cls", "vqa", "report")
MODES = ("full", "linear")  # full fine-tune | linear probe (backbone frozen, head trained)
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")  # CheXpert -1.0: masked | positive | negative
BLANK_POLICIES = ("ignore", "zeros")  # blank (not mentioned): masked | negative
INIT_WEIGHTS = ("pretrained", "random")


@dataclass(kw_only=True, slots=True)
class FinetuneConfig:
    task: str = "cls"
    init: str = ""  # pretraining run directory (architecture, tokenizer, weights)
    init_weights: str = "pretrained"
    mode: str = "full"
    # cls: label set; () = every CheXpert label with both classes in the training split
    labels: tuple[str, ...] = ()
    uncertain: str = "ignore"
    blank: str = "ignore"
    # fraction of the training split's labelled samples, sampled by patient with fraction_seed
    label_fraction: float = 1.0
    fraction_seed: int = 0
    head_lr_mult: float = 10.0  # head learning rate = train.lr x this (full fine-tune)
    head_dropout: float = 0.1
    # vqa: answers seen fewer times than this in the training split are not classes
    min_answer_count: int = 1
    # report: decoder and decoding (transformers' generate)
    decoder_layers: int = 2
    max_target_length: int = 96
    max_new_tokens: int = 80
    num_beams: int = 3
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 3
    # evaluation
    bootstrap: int = 1000  # resamples of the 95% confidence intervals; 0 = none
    eval_split: str = "test"

    def __post_init__(self) -> None:
        choices = {
            "task": TASKS,
            "mode": MODES,
            "uncertain": UNCERTAIN_POLICIES,
            "blank": BLANK_POLICIES,
            "init_weights": INIT_WEIGHTS,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"finetune.{name} must be one of {list(valid)}, got {getattr(self, name)!r}"
                )
        if not (math.isfinite(self.label_fraction) and 0.0 < self.label_fraction <= 1.0):
            raise ValueError(
                f"finetune.label_fraction must be in (0, 1], got {self.label_fraction}"
            )
        if self.fraction_seed < 0 or self.min_answer_count < 1 or self.bootstrap < 0:
            raise ValueError(
                "finetune.fraction_seed and bootstrap must be >= 0, min_answer_count >= 1"
            )
        if not (math.isfinite(self.head_lr_mult) and self.head_lr_mult > 0):
            raise ValueError(f"finetune.head_lr_mult must be > 0, got {self.head_lr_mult}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"finetune.head_dropout must be in [0, 1), got {self.head_dropout}")
        if (
            min(self.decoder_layers, self.max_target_length, self.max_new_tokens, self.num_beams)
            < 1
        ):
            raise ValueError(
                "finetune.decoder_layers, max_target_length, max_new_tokens, num_beams must be >= 1"
            )
        if self.no_repeat_ngram_size < 0 or not math.isfinite(self.length_penalty):
            raise ValueError("finetune.no_repeat_ngram_size must be >= 0, length_penalty finite")
        if self.eval_split not in ("train", "validate", "test"):
            raise ValueError(
                f"finetune.eval_split must be train | validate | test, got {self.eval_split!r}"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"finetune.labels lists a label twice: {list(self.labels)}")
