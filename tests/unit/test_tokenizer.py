"""WordPiece tokenizer: training, fixed special ids, [PHI] handling, save/load round trip."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from medtrain.data.errors import DataError
from medtrain.data.tokenizer import SPECIAL_TOKENS, TokenizerConfig, load_tokenizer, train_tokenizer

FINDINGS = [
    "no acute cardiopulmonary process",
    "mild cardiomegaly",
    "small left pleural effusion",
    "right lower lobe consolidation concerning for pneumonia",
    "no pneumothorax",
    "endotracheal tube terminates 4 cm above the carina",
    "stable bibasilar atelectasis",
    "pulmonary vascular congestion and mild interstitial edema",
    "healed right rib fractures",
    "the lungs are clear",
]
PREFIXES = ["Compared to [PHI],", "FINDINGS:", "IMPRESSION:", "As discussed with Dr. [PHI],", ""]


def make_reports(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(PREFIXES)} {rng.choice(FINDINGS).capitalize()}. "
        f"{rng.choice(FINDINGS).capitalize()}."
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PreTrainedTokenizerFast, Path]:
    out = tmp_path_factory.mktemp("tok")
    tok = train_tokenizer(make_reports(300), vocab_size=300, out_dir=out, min_frequency=2)
    return tok, out


def test_special_ids_fixed(trained: tuple[PreTrainedTokenizerFast, Path]) -> None:
    tok, _ = trained
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(6))
    assert tok.pad_token_id == 0
    assert tok.unk_token_id == 1
    assert tok.cls_token_id == 2
    assert tok.sep_token_id == 3
    assert tok.mask_token_id == 4
    assert 5 in tok.all_special_ids
    assert tok.model_max_length == TokenizerConfig().max_length
    assert 50 < len(tok) <= 300


def test_encoding_template_and_phi(trained: tuple[PreTrainedTokenizerFast, Path]) -> None:
    tok, _ = trained
    ids = tok("Compared to [PHI], NO Pneumothorax.")["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens.count("[PHI]") == 1
    assert "phi" not in tokens and "[" not in tokens
    assert "no" in tokens  # lowercased
    assert tok.decode(ids, skip_special_tokens=True) == "compared to, no pneumothorax."
    # An unseen word splits into WordPiece continuations, not [UNK].
    assert any(t.startswith("##") for t in tok.tokenize("pneumothoraces"))


def test_truncation_keeps_sep(trained: tuple[PreTrainedTokenizerFast, Path]) -> None:
    tok, _ = trained
    ids = tok(" ".join(make_reports(20)), truncation=True, max_length=16)["input_ids"]
    assert len(ids) == 16 and ids[0] == 2 and ids[-1] == 3


def test_save_load_round_trip(trained: tuple[PreTrainedTokenizerFast, Path]) -> None:
    tok, out = trained
    assert (out / "tokenizer.json").is_file()
    text = "As discussed with Dr. [PHI], mild cardiomegaly."
    expected = tok(text)["input_ids"]
    for loaded in (
        load_tokenizer(out),
        PreTrainedTokenizerFast.from_pretrained(out, local_files_only=True),
        AutoTokenizer.from_pretrained(str(out), local_files_only=True),
    ):
        assert loaded(text)["input_ids"] == expected
        assert loaded.mask_token_id == 4 and loaded.pad_token_id == 0
        assert sorted(loaded.all_special_ids) == sorted(tok.all_special_ids)
        assert len(loaded) == len(tok)


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "empty")
