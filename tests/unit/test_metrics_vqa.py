"""VQA answer normalization (official VQA eval convention) and accuracy / VQA score."""

from __future__ import annotations

import pytest

from medtrain.eval.metrics.vqa import normalize_answer, vqa_metrics


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("  No\n", "no"),
        ("The left lung", "left lung"),
        ("an MRI", "mri"),
        ("A", ""),
        ("Two", "2"),
        ("two lesions", "2 lesions"),
        ("ten", "10"),
        ("none", "0"),
        ("2.5", "2.5"),
        ("2.5 cm.", "2.5 cm"),
        ("x-ray", "x ray"),
        ("X-Ray", "x ray"),
        ("left - right", "left right"),
        ("right, left", "right left"),
        ("1,000", "1000"),
        ("heart (enlarged)", "heart enlarged"),
        ("Is it?", "is it"),
        ("dont know", "don't know"),
        ("CT/MRI", "ct mri"),
        ("T2-weighted", "t2 weighted"),
        ("lung's", "lung's"),
        ("Chest   X-ray!", "chest x ray"),
        ("theory", "theory"),
    ],
)
def test_normalize_answer(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_accuracy_by_type_and_answers() -> None:
    refs = {
        "1": {"question": "q", "answer": "Yes", "answer_type": "CLOSED"},
        "2": {"question": "q", "answer": "no", "answer_type": "closed"},
        "3": {"question": "q", "answer": "left lung", "answer_type": "OPEN"},
        "4": {"question": "q", "answers": ["two", "2", "3"], "answer_type": "OPEN"},
        "5": {"question": "q", "answer": "heart", "answer_type": "OPEN"},
    }
    preds = {"1": "yes.", "2": "yes", "3": "The left lung", "4": "2", "5": "liver"}
    m = vqa_metrics(preds, refs)
    assert m["accuracy/closed"] == 0.5
    assert m["accuracy/open"] == pytest.approx(2 / 3)
    assert m["accuracy/overall"] == pytest.approx(3 / 5)
    # vqa score: 1, 0, 1, min(2/3, 1), 0
    assert m["vqa_score"] == pytest.approx((1 + 0 + 1 + 2 / 3 + 0) / 5)
    assert m["count/closed"] == 2.0 and m["count/open"] == 3.0


def test_single_answer_score_equals_accuracy() -> None:
    answers = ["lung", "heart", "liver", "lung", "spleen"]
    refs = {str(i): {"answer": a, "answer_type": "OPEN"} for i, a in enumerate(answers)}
    preds = {"0": "Lung", "1": "x", "2": "the liver", "3": "lungs", "4": "spleen."}
    m = vqa_metrics(preds, refs)
    assert m["vqa_score"] == m["accuracy/overall"] == pytest.approx(3 / 5)
    assert "accuracy/closed" not in m and m["count/closed"] == 0.0


def test_three_agreeing_humans_cap_at_one_and_errors() -> None:
    refs = {"q": {"answers": ["yes"] * 4 + ["no"], "answer_type": "CLOSED"}}
    assert vqa_metrics({"q": "Yes"}, refs)["vqa_score"] == 1.0
    assert vqa_metrics({"q": "no"}, refs)["vqa_score"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="without a prediction"):
        vqa_metrics({}, refs)
    with pytest.raises(ValueError, match="answer_type"):
        vqa_metrics({"q": "no"}, {"q": {"answer": "no", "answer_type": "MAYBE"}})
