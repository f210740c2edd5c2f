"""MLM masking statistics and invariants; collator batching and errors; Masker determinism and
its saved state."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from medtrain.data.collate import Collator, Masker, MaskingConfig, mask_tokens
from medtrain.data.errors import DataError
from medtrain.data.records import Sample
from medtrain.data.tokenizer import train_tokenizer

V = 1000
MASK_ID = 4
SPECIAL = torch.tensor([0, 1, 2, 3, 4, 5])


def random_batch(b: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] tokens [SEP] [PAD]...; a few [UNK]/[PHI] inside; random lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, V, (b, length), generator=g)  # (B, L)
    lens = torch.randint(3, length + 1, (b,), generator=g)  # (B,)
    pos = torch.arange(length)
    attn = (pos[None, :] < lens[:, None]).long()  # (B, L)
    sprinkle = torch.rand(b, length, generator=g) < 0.05
    ids = torch.where(sprinkle, torch.tensor(5), ids)
    ids[:, 0] = 2
    ids[torch.arange(b), lens - 1] = 3
    ids = ids.masked_fill(attn == 0, 0)
    return ids, attn


def run_mask(ids, attn, cfg=None, seed=0):
    return mask_tokens(
        ids,
        attn,
        special_ids=SPECIAL,
        vocab_size=V,
        mask_id=MASK_ID,
        cfg=cfg or MaskingConfig(),
        generator=torch.Generator().manual_seed(seed),
    )


def test_masking_statistics_and_invariants() -> None:
    ids, attn = random_batch(64, 512)
    masked, labels = run_mask(ids, attn)
    maskable = attn.bool() & ~torch.isin(ids, SPECIAL)
    selected = labels != -100
    n_sel = selected.sum().item()

    assert not (selected & ~maskable).any(), "special or padding token selected"
    assert abs(n_sel / maskable.sum().item() - 0.15) < 0.01
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected]), "unselected tokens changed"

    sel_out, sel_in = masked[selected], ids[selected]
    frac_mask = (sel_out == MASK_ID).float().mean().item()
    is_random = (sel_out != MASK_ID) & (sel_out != sel_in)
    frac_random = is_random.float().mean().item()
    assert abs(frac_mask - 0.8) < 0.03
    assert abs(frac_random - 0.1) < 0.02  # collisions with the original are ~1/V
    assert not torch.isin(sel_out[sel_out != MASK_ID], SPECIAL).any()
    assert ((masked >= 0) & (masked < V)).all()


def test_random_replacement_never_special() -> None:
    ids, attn = random_batch(32, 256, seed=1)
    cfg = MaskingConfig(mlm_probability=1.0, mask_fraction=0.0, random_fraction=1.0)
    masked, labels = run_mask(ids, attn, cfg)
    selected = labels != -100
    assert torch.equal(selected, attn.bool() & ~torch.isin(ids, SPECIAL))
    assert not torch.isin(masked[selected], SPECIAL).any()
    # Specials / padding in the output are exactly those of the input.
    assert torch.equal(masked[~selected], ids[~selected])


@pytest.mark.parametrize("seed", range(5))
def test_at_least_one_mask_tiny_input(seed: int) -> None:
    ids = torch.tensor([[2, 17, 3, 0, 0]])  # one maskable token
    attn = torch.tensor([[1, 1, 1, 0, 0]])
    masked, labels = run_mask(ids, attn, MaskingConfig(mlm_probability=0.0), seed=seed)
    assert labels.tolist() == [[-100, 17, -100, -100, -100]]
    assert masked[0, [0, 2, 3, 4]].tolist() == [2, 3, 0, 0]


def test_nothing_maskable_gives_no_labels() -> None:
    ids = torch.tensor([[2, 3, 0], [2, 5, 3]])
    attn = torch.tensor([[1, 1, 0], [1, 1, 1]])
    masked, labels = run_mask(ids, attn)
    assert (labels == -100).all() and torch.equal(masked, ids)


def test_mask_determinism() -> None:
    ids, attn = random_batch(8, 64)
    a, la = run_mask(ids, attn, seed=3)
    b, lb = run_mask(ids, attn, seed=3)
    c, lc = run_mask(ids, attn, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(lc, la)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mlm_probability": 1.5},
        {"mlm_probability": -0.1},
        {"mask_fraction": 0.95},
        {"random_fraction": -0.01},
        {"mask_fraction": 0.7, "random_fraction": 0.4},
    ],
)
def test_bad_masking_config(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="masking"):
        MaskingConfig(**kwargs)


# ---------------------------------------------------------------- Collator


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    words = ["no", "acute", "process", "mild", "cardiomegaly", "small", "left", "right"]
    words += ["pleural", "effusion", "lungs", "clear"]
    rng = random.Random(0)
    texts = [" ".join(rng.choices(words, k=8)) + " [PHI]." for _ in range(200)]
    out: Path = tmp_path_factory.mktemp("tok")
    return train_tokenizer(texts, vocab_size=120, out_dir=out)


def make_samples(n: int, texts: list[str | None] | None = None) -> list[Sample]:
    texts = texts or [("mild cardiomegaly " * (i + 1)).strip() for i in range(n)]
    labels = torch.full((14,), float("nan"))
    labels[3] = 1.0
    return [
        Sample(id=f"s{i}", pixel_values=torch.rand(1, 32, 32), text=t, labels=labels)
        for i, t in enumerate(texts)
    ]


def test_collator_shapes_and_dtypes(tok: PreTrainedTokenizerFast) -> None:
    col = Collator(tok, max_length=8)
    samples = make_samples(3)
    batch = col(samples)
    assert batch["ids"] == ["s0", "s1", "s2"]
    assert batch["pixel_values"].shape == (3, 1, 32, 32)
    assert torch.equal(batch["pixel_values"], torch.stack([s.pixel_values for s in samples]))
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].shape == (3, 14) and torch.isnan(batch["labels"][:, 0]).all()
    assert "mlm_labels" not in batch  # masking happens in the training process (Masker)
    L = batch["input_ids"].shape[1]
    assert L == 8  # longest (truncated at max_length)
    for key in ("input_ids", "attention_mask"):
        assert batch[key].shape == (3, L) and batch[key].dtype == torch.long
    ids, attn = batch["input_ids"], batch["attention_mask"]
    assert (ids[:, 0] == tok.cls_token_id).all()
    assert attn[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # [CLS] mild cardiomegaly [SEP]
    assert ids[2, -1] == tok.sep_token_id  # truncated rows keep [SEP]

    masked = Masker(tok, masking=MaskingConfig(), seed=0)(batch)
    assert masked["ids"] == batch["ids"] and masked["input_ids"] is batch["input_ids"]
    for key in ("mlm_input_ids", "mlm_labels"):
        assert masked[key].shape == (3, L) and masked[key].dtype == torch.long
    assert (masked["mlm_labels"] != -100).any()
    assert ((masked["mlm_labels"] == -100) | (masked["mlm_labels"] == ids)).all()


def test_collator_pads_to_longest(tok: PreTrainedTokenizerFast) -> None:
    col = Collator(tok, max_length=64)
    batch = col(make_samples(2))
    assert batch["input_ids"].shape == (2, 6)
    assert batch["input_ids"][0, -1] == tok.pad_token_id


def test_masker_reproducible_varies_and_resumes(tok: PreTrainedTokenizerFast) -> None:
    batch = Collator(tok, max_length=64)(make_samples(4, ["no acute process " * 20] * 4))
    cfg = MaskingConfig()
    a, b = Masker(tok, masking=cfg, seed=7), Masker(tok, masking=cfg, seed=7)
    first_a, first_b = a(batch), b(batch)
    assert torch.equal(first_a["mlm_input_ids"], first_b["mlm_input_ids"])
    saved = a.state()  # JSON-able
    assert isinstance(saved, str)
    second_a = a(batch)
    assert not torch.equal(first_a["mlm_labels"], second_a["mlm_labels"])
    other = Masker(tok, masking=cfg, seed=8)(batch)
    assert not torch.equal(first_a["mlm_labels"], other["mlm_labels"])
    # A fresh masker given the saved state continues exactly where `a` was.
    resumed = Masker(tok, masking=cfg, seed=123)
    resumed.load_state(saved)
    again = resumed(batch)
    assert torch.equal(again["mlm_labels"], second_a["mlm_labels"])
    assert torch.equal(again["mlm_input_ids"], second_a["mlm_input_ids"])


def test_collator_empty_text(tok: PreTrainedTokenizerFast) -> None:
    col = Collator(tok, max_length=16)
    samples = make_samples(3, ["mild cardiomegaly", "   ", "no acute process"])
    with pytest.raises(DataError, match="s1"):
        col(samples)
    no_report = make_samples(2, ["mild cardiomegaly", None])
    with pytest.raises(DataError, match="'s1' has no report text"):
        col(no_report)
