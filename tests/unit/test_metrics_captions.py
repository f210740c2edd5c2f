"""BLEU / ROUGE-L / CIDEr-D equal pycocoevalcap on the same tokenized text; tokenizer cases."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from medtrain.eval.metrics.captions import caption_metrics, tokenize_for_scoring

WORDS = [
    "the",
    "heart",
    "is",
    "enlarged",
    "no",
    "pleural",
    "effusion",
    "small",
    "left",
    "right",
    "lung",
    "base",
    "opacity",
]


def _reference(preds, refs):
    gts = {k: [tokenize_for_scoring(r) for r in refs[k]] for k in refs}
    res = {k: [tokenize_for_scoring(preds[k])] for k in refs}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {**{f"bleu{i + 1}": b for i, b in enumerate(bleu)}, "rougeL": rouge, "cider": cider}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_pycocoevalcap_random(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def sent() -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 15)))) + "."

    preds = {str(i): sent() for i in range(12)}
    refs = {str(i): [sent() for _ in range(int(rng.integers(1, 4)))] for i in range(12)}
    ours, ref = caption_metrics(preds, refs), _reference(preds, refs)
    assert set(ours) == {"bleu1", "bleu2", "bleu3", "bleu4", "rougeL", "cider"}
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-6)
    assert 0 < ours["bleu1"] < 1 and ours["cider"] > 0


def test_hand_made_cases() -> None:
    same = {"a": "The heart is enlarged.", "b": "No pleural effusion, no pneumothorax."}
    m = caption_metrics(same, {k: [v] for k, v in same.items()})
    assert m["bleu1"] == pytest.approx(1.0) and m["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert m["rougeL"] == pytest.approx(1.0)
    assert m == pytest.approx(_reference(same, {k: [v] for k, v in same.items()}), abs=1e-6)
    preds = {"a": "alpha beta gamma delta", "b": "epsilon zeta eta theta"}
    refs = {"a": ["heart is enlarged today"], "b": ["no pleural effusion seen"]}
    m = caption_metrics(preds, refs)
    assert m["bleu1"] < 1e-6 and m["rougeL"] == 0.0 and m["cider"] == 0.0
    # a half-overlapping case, checked against pycocoevalcap
    preds = {"a": "small left pleural effusion", "b": "heart size is normal"}
    refs = {"a": ["small right pleural effusion"], "b": ["the heart size is normal", "normal"]}
    assert caption_metrics(preds, refs) == pytest.approx(_reference(preds, refs), abs=1e-6)


def test_single_document_cider_and_empty_prediction() -> None:
    m = caption_metrics({"a": "no effusion"}, {"a": ["no effusion"]})
    assert m["cider"] == 0.0  # idf over one document is log(1/1) = 0 (documented)
    m = caption_metrics({"a": "", "b": "no effusion"}, {"a": ["lungs clear"], "b": ["no effusion"]})
    assert m["rougeL"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="without a prediction"):
        caption_metrics({}, {"a": ["x"]})


@pytest.mark.parametrize(
    ("raw", "tok"),
    [
        ("The heart is enlarged.", "the heart is enlarged"),
        ("No effusion; no pneumothorax.", "no effusion no pneumothorax"),
        ("Tip 2.5 cm above the carina", "tip 2.5 cm above the carina"),
        ("The patient's heart isn't enlarged", "the patient 's heart is n't enlarged"),
        ("Left-sided PICC (tip in SVC)", "left-sided picc tip in svc"),
        ("  Multiple   spaces\nand lines ", "multiple spaces and lines"),
        ('Findings: "stable" -- unchanged...', "findings stable unchanged"),
    ],
)
def test_tokenize_for_scoring(raw: str, tok: str) -> None:
    assert tokenize_for_scoring(raw) == tok
