"""WordPiece tokenizer: ids, [PHI], save/load, vocabulary PHI audit, provenance, fertility."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from medtrain.data.config import DeidConfig
from medtrain.data.errors import DataError
from medtrain.data.text import text_path_id
from medtrain.data.tokenizer import (
    AUDIT_FILE,
    SPECIAL_TOKENS,
    audit_vocabulary,
    fertility,
    is_marked_deidentified,
    load_tokenizer,
    train_tokenizer,
)

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
    assert tok.model_max_length == 256  # train_tokenizer's default max_length
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


def test_run_length_is_carried_and_truncates(trained, tmp_path: Path) -> None:
    """A run loads its tokenizer with max_length=model.text.max_length and saves that copy."""
    from tokenizers import Tokenizer

    tok, out = trained
    long_text = " ".join(make_reports(20))
    n_full = len(tok(long_text)["input_ids"])
    run_tok = load_tokenizer(out, max_length=16)
    assert run_tok.model_max_length == 16 and n_full > 16
    assert len(run_tok(long_text, truncation=True)["input_ids"]) == 16
    assert fertility(run_tok, [long_text]) == fertility(tok, [long_text])  # not cut by the limit
    run_tok.save_pretrained(tmp_path / "run_tok")
    for loaded in (
        AutoTokenizer.from_pretrained(str(tmp_path / "run_tok"), local_files_only=True),
        load_tokenizer(tmp_path / "run_tok"),
    ):
        assert loaded.model_max_length == 16
        ids = loaded(long_text, truncation=True)["input_ids"]
        assert len(ids) == 16 and ids[0] == 2 and ids[-1] == 3
    raw = Tokenizer.from_file(str(tmp_path / "run_tok" / "tokenizer.json"))
    assert len(raw.encode(long_text).ids) == 16  # plain `tokenizers` users are cut too
    assert load_tokenizer(out).model_max_length == 256  # the trained directory is unchanged
    with pytest.raises(DataError, match="max_length"):
        load_tokenizer(out, max_length=1)


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "empty")


# --- PHI audit, provenance, fertility --------------------------------------------------------
LEAKY = [
    f"Discussed with doctor smith about case {n}. MRN 1234567 and 7654321 again. Mild edema."
    for n in range(40)
] + ["No acute process. Mild cardiomegaly."] * 40


def test_audit_flags_digits_and_names():
    rejected = audit_vocabulary(
        ["[PHI]", "1234567", "##98765", "1234", "smith", "##quackenbush", "##son", "edema"],
        phi_names={"quackenbush"},
    )
    assert rejected == {
        "1234567": "5+ digits",
        "##98765": "5+ digits",
        "smith": "gazetteer name",
        "##quackenbush": "name found by de-id",
    }


def test_training_removes_phi_like_tokens(tmp_path: Path) -> None:
    tok = train_tokenizer(LEAKY, vocab_size=200, out_dir=tmp_path, min_frequency=2)
    vocab = tok.get_vocab()
    assert "smith" not in vocab and not any(t.strip("#").isdigit() and len(t) > 6 for t in vocab)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(6))
    assert sorted(vocab.values()) == list(range(len(vocab)))  # ids stay contiguous
    audit = json.loads((tmp_path / AUDIT_FILE).read_text())
    assert ["smith", "gazetteer name"] in audit["removed"] and audit["vocab_size"] == len(tok)
    assert tok.tokenize("smith") != ["smith"] and "1234567" not in tok.tokenize("1234567")
    assert load_tokenizer(tmp_path)("mild edema")["input_ids"] == tok("mild edema")["input_ids"]


def test_fertility_counts_pieces_per_word(trained: tuple[PreTrainedTokenizerFast, Path]) -> None:
    tok, _ = trained
    assert fertility(tok, ["mild cardiomegaly", "no pneumothorax"]) == pytest.approx(1.0)
    text = "pneumothoraces cardiomegalies"
    assert fertility(tok, [text]) == len(tok.tokenize(text)) / 2 > 1
    with pytest.raises(DataError, match="word"):
        fertility(tok, ["   "])


def test_cli_refuses_unmarked_corpus_and_reports_fertility(tmp_path, capsys) -> None:
    from medtrain.cli import main

    raw = tmp_path / "notes.txt"
    raw.write_text("\n".join(make_reports(60) + ["Discussed with Dr. Quackenbush at 10:15."]))
    args = ["tokenizer", "train", "--vocab-size", "120", "--corpus", str(raw)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "notes.deid.txt" in capsys.readouterr().err and not (tmp_path / "a").exists()

    marked = tmp_path / "notes.deid.txt"
    marked.write_text(raw.read_text())
    assert main([*args[:-1], str(marked), "--no-baseline", "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--scrub", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "domain vocabulary" in out and "general vocabulary" in out
    provenance = json.loads((tmp_path / "c" / "provenance.json").read_text())
    assert provenance == {
        "text_path": text_path_id(DeidConfig()),
        "inputs": [{"corpus": str(raw), "deid": "scrubbed by --scrub"}],
    }
    assert "quackenbush" not in load_tokenizer(tmp_path / "c").get_vocab()
    assert main([*args, "--force", "--no-baseline", "--out", str(tmp_path / "d")]) == 0
    assert is_marked_deidentified("x.deid.txt") and not is_marked_deidentified("x.txt")


def test_cli_reader_path_deidentifies(tmp_path, capsys) -> None:
    from medtrain.cli import main
    from medtrain.synth.config import SynthConfig
    from medtrain.synth.generate import generate

    root = tmp_path / "synth"
    generate(SynthConfig(layout="manifest", n=40, image_size=32, phi_fraction=1.0), root)
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", "--root", str(root), "--source", "manifest"]
    assert main([*argv, "--vocab-size", "300", "--no-baseline", "--out", str(out)]) == 0
    assert "held-out reports" in capsys.readouterr().out
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["inputs"][0]["deid"] == "run by this command"
    assert provenance["text_path"]["hash"] == text_path_id(DeidConfig())["hash"]
    vocab = load_tokenizer(out).get_vocab()
    assert not any(len(t.strip("#")) >= 5 and t.strip("#").isdigit() for t in vocab)
