"""VQA answer normalization and accuracy / VQA score.

`normalize_answer` follows the official VQA evaluation script (vqaEval.py) step by step:
newlines/tabs -> space, punctuation handled as its processPunctuation (a punctuation mark next
to a space, or any mark in a text holding a digit-comma-digit group, is removed; otherwise it
becomes a space, so "x-ray" -> "x ray"), a period not followed by a digit is removed (decimal
points in "2.5" stay), then processDigitArticle: lowercase, number words -> digits ("none" ->
"0" as in the official map), articles a/an/the dropped, common apostrophe-less contractions
restored ("dont" -> "don't"). Marks the official list does not name (':', "'", '%', ...) stay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@")
_PUNCT += ("`", ",", "?", "!")
_COMMA_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")  # the official "(?!<=\d)(\.)(?!\d)": a period before no digit
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
_CONTRACTIONS = {
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "isnt": "isn't",
    "shouldnt": "shouldn't",
    "wasnt": "wasn't",
    "werent": "weren't",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "thats": "that's",
    "theres": "there's",
    "whats": "what's",
}
ANSWER_TYPES = ("CLOSED", "OPEN")


def _punctuation(text: str) -> str:
    has_comma_digits = _COMMA_DIGITS.search(text) is not None
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or has_comma_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def normalize_answer(s: str) -> str:
    """VQA-convention normal form of an answer (see the module docstring)."""
    text = str(s).replace("\n", " ").replace("\t", " ").strip()
    words = []
    for w in _punctuation(text).lower().split():
        w = _NUMBERS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def _humans(ref: Mapping) -> list[str]:
    answers = list(ref.get("answers") or ())
    if not answers:
        if ref.get("answer") is None:
            raise ValueError(f"VQA reference without answer or answers: {dict(ref)}")
        answers = [ref["answer"]]
    return [normalize_answer(a) for a in answers]


def vqa_metrics(preds: Mapping[str, str], refs: Mapping[str, Mapping]) -> dict[str, float]:
    """Accuracy (normalized exact match with `answer` or any of `answers`) over CLOSED, OPEN
    and all questions, and `vqa_score` = mean of min(#human answers equal to the prediction / 3,
    1) when a question has several answers, exact match when it has one (then == accuracy).
    A type with no questions has no `accuracy/<type>` key; `count/<type>` gives the counts."""
    missing = [k for k in refs if k not in preds]
    if missing:
        raise ValueError(f"{len(missing)} questions without a prediction, e.g. {missing[:5]}")
    hits: dict[str, list[float]] = {"closed": [], "open": [], "overall": []}
    scores: list[float] = []
    for qid, ref in refs.items():
        pred = normalize_answer(preds[qid])
        humans = _humans(ref)
        if ref.get("answer") is not None:
            gold = {normalize_answer(ref["answer"]), *humans}
        else:
            gold = set(humans)
        hit = float(pred in gold)
        hits["overall"].append(hit)
        kind = ref.get("answer_type")
        if kind is not None:
            kind = str(kind).upper()
            if kind not in ANSWER_TYPES:
                raise ValueError(f"question {qid}: answer_type {kind!r} not in {ANSWER_TYPES}")
            hits[kind.lower()].append(hit)
        n = sum(h == pred for h in humans)
        scores.append(float(n > 0) if len(humans) == 1 else min(n / 3.0, 1.0))
    out: dict[str, float] = {}
    for kind, vals in hits.items():
        if vals:
            out[f"accuracy/{kind}"] = sum(vals) / len(vals)
        out[f"count/{kind}"] = float(len(vals))
    if scores:
        out["vqa_score"] = sum(scores) / len(scores)
    return out
