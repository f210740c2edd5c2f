"""BLEU-1..4, ROUGE-L and CIDEr-D through pycocoevalcap's reference scorers, without Java.

pycocoevalcap's PTBTokenizer runs Stanford CoreNLP (Java); we import only the scorer submodules
and tokenize with `tokenize_for_scoring`, a pure-Python stand-in for its output: lowercase,
clitics split ("don't" -> "do n't", "heart's" -> "heart 's"), punctuation tokens dropped,
words joined by single spaces. Every system is scored on text tokenized this one way.

CIDEr-D weighs n-grams by idf over the reference documents of the scored set: with a single
document every idf is log(1/1) = 0 and CIDEr-D is 0.0 (pycocoevalcap's value, reported as is);
score sets of several documents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Tokens pycocoevalcap's PTBTokenizer removes after tokenization (plus raw brackets).
_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-"]
    + ["--", "...", ";", "(", ")", "[", "]", "{", "}", '"']
)
_CLITIC = re.compile(r"(?<=[a-z])(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"n't|'[a-z]+|[a-z0-9]+(?:[-./:,'][a-z0-9]+)*|\.\.\.|--|\S")


def tokenize_for_scoring(text: str) -> str:
    """Lowercased tokens separated by single spaces, punctuation dropped (PTB-like)."""
    low = _CLITIC.sub(r" \1", str(text).lower().replace("\u2019", "'"))
    toks = _TOKEN.findall(low)
    return " ".join(t for t in toks if t not in _PUNCTUATIONS and t.strip(".,;:!?'\"`-") != "")


def caption_metrics(
    preds: Mapping[str, str], refs: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Keys bleu1..bleu4 (corpus BLEU, Bleu(4)), rougeL (Rouge(), beta 1.2, mean over ids;
    an empty prediction scores 0 where pycocoevalcap would divide by zero), cider (Cider(),
    which is CIDEr-D). `refs[id]` is a list of reference texts (at least one)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = list(refs)
    missing = [k for k in ids if k not in preds]
    if missing:
        raise ValueError(f"{len(missing)} reports without a prediction, e.g. {missing[:5]}")
    if not ids:
        raise ValueError("no reports to score")
    gts = {k: [tokenize_for_scoring(r) for r in refs[k]] for k in ids}
    res = {k: [tokenize_for_scoring(preds[k])] for k in ids}
    for k in ids:
        if not gts[k]:
            raise ValueError(f"report {k} has no reference text")
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge = Rouge()
    rl = [rouge.calc_score(res[k], gts[k]) if res[k][0] else 0.0 for k in ids]
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    out["rougeL"] = float(sum(rl) / len(rl))
    out["cider"] = float(cider)
    return out
