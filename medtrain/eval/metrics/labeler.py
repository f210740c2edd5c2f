"""A rule-based, negation- and uncertainty-aware CheXpert-style report labeler (our own rules).

label_report(text) -> {label: 1.0 | 0.0 | -1.0 | None} over CHEXPERT_LABELS:
1. Sections whose text does not describe this exam (INDICATION, HISTORY, COMPARISON, EXAMINATION,
   TECHNIQUE, ...) are dropped; the rest is lowercased, line-wrapping joined and split into
   sentences ('.', not a decimal point; ';', '?', '!'). "no (significant/interval) change" is read
   as "unchanged" (a statement about a present finding, not a negation).
2. Per finding, mention patterns (synonyms, see MENTIONS) are found. A mention is
   - negative when a negation cue (no, not, without, negative for, free of, no evidence of, ruled
     out, resolution of, removal of, ...) precedes it in the same clause (lists "no effusion,
     pneumothorax, or consolidation" and "no A and B" share the cue; "but", "however", a verb
     like "is seen", "and" before an article or a size/severity word ("no pneumothorax and a
     large effusion") end the scope), or a post cue follows it ("has resolved", "is not seen",
     "has been removed", "is no longer seen", "is absent");
   - uncertain when a hedge precedes it in the clause (possible, questionable, may, likely,
     suggestive of, concerning for, cannot exclude, evaluate for, ...) or follows it ("cannot be
     excluded", "is not excluded", "may represent"); hedges are tested before negation, so the
     double negative "cannot be excluded" is uncertain;
   - positive otherwise (also "unchanged", "stable", "interval increase in ...").
   Normal statements ("heart size is normal", "lungs are clear", "mediastinal contours are
   normal") are negative mentions of Cardiomegaly; Consolidation and Lung Opacity; Enlarged
   Cardiomediastinum respectively.
3. "Opacity" in a sentence that names a more specific finding (consolidation, edema, atelectasis,
   pneumonia, ...) is attributed to that finding, not counted as a separate Lung Opacity.
4. Aggregation over mentions as CheXpert: 1 if any positive, else -1 if any uncertain, else 0 if
   any negative, else None. Implications (as the synthetic ground truth and CheXpert's hierarchy):
   a positive/uncertain Consolidation, Edema or Pneumonia raises Lung Opacity to at least that
   value, Cardiomegaly raises Enlarged Cardiomediastinum. "Airspace disease" is a Lung Opacity
   mention (CheXpert), "vascular congestion" an Edema mention (CheXpert).
5. No Finding = 1.0 when no label other than Support Devices is 1.0 or -1.0, else None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from medtrain.data.labels import CHEXPERT_LABELS, NEGATIVE, POSITIVE, UNCERTAIN

_SKIP_SECTIONS = (
    "INDICATION",
    "INDICATIONS",
    "HISTORY",
    "CLINICAL HISTORY",
    "CLINICAL INFORMATION",
    "REASON FOR EXAM",
    "REASON FOR EXAMINATION",
    "COMPARISON",
    "COMPARISONS",
    "EXAMINATION",
    "EXAM",
    "TECHNIQUE",
    "PROCEDURE",
)
_KEEP_SECTIONS = ("FINDINGS", "IMPRESSION", "CONCLUSION", "NOTIFICATION", "RECOMMENDATION")
_HEADER = re.compile(
    r"\b(" + "|".join(sorted(_SKIP_SECTIONS + _KEEP_SECTIONS, key=len, reverse=True)) + r")\s*:"
)

W = r"[^.;]"  # a character inside the sentence
MENTIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (r"atelecta\w*", r"\bcollapse[d]?\b"),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"enlarge\w*\s+(?:of\s+)?(?:the\s+)?(?:cardiac\s+silhouette|heart|cardiac\s+size)",
        r"\benlarged\s+(?:cardiac\s+silhouette|heart)",
        r"\b(?:heart|cardiac\s+silhouette|cardiac\s+size)" + W + r"{0,30}?\b(?:enlarged|large)\b",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Edema": (
        r"\bedema\w*",
        r"vascular\s+congestion",
        r"pulmonary\s+congestion",
        r"\bchf\b",
        r"heart\s+failure",
    ),
    "Enlarged Cardiomediastinum": (
        r"widen\w*\s+(?:of\s+)?(?:the\s+)?(?:superior\s+)?(?:cardio)?mediastin\w*",
        r"\b(?:cardio)?mediastin\w*" + W + r"{0,30}?\b(?:widen\w*|enlarge\w*|prominen\w*)",
        r"enlarged\s+(?:cardio)?mediastin\w*",
    ),
    "Fracture": (r"fractur\w*",),
    "Lung Lesion": (r"nodul\w*", r"\bmass(?:es)?\b", r"\blesions?\b", r"granuloma\w*"),
    "Lung Opacity": (
        r"opaci\w*",
        r"air\s?space\s+disease",
        r"infiltrat\w*",
        r"\bhaziness\b",
    ),
    "Pleural Effusion": (
        r"(?<!pericardial\s)effusions?",
        r"blunt\w*\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+){0,2}costophrenic",
        r"costophrenic\s+(?:angles?\s+)?blunting",
        r"pleural\s+fluid",
        r"hydrothora\w*",
    ),
    "Pleural Other": (r"pleural\s+thickening", r"pleural\s+plaques?", r"fibrothora\w*"),
    "Pneumonia": (r"pneumoni\w*", r"infectious\s+process", r"\binfection\b"),
    "Pneumothorax": (r"pneumothora\w*", r"\bptx\b"),
    "Support Devices": (
        r"\btubes?\b",
        r"catheters?",
        r"pacemakers?",
        r"\bpacer\b",
        r"\bicd\b",
        r"defibrillator",
        r"\bpicc\b",
        r"(?<!pleural\s)(?<!septal\s)(?<!kerley\s)(?<!kerley b\s)\blines?\b(?!ar)",
        r"(?:pacing|pacer|epicardial)\s+(?:leads?|wires?)",
        r"\bleads?\b(?=" + W + r"{0,40}(?:ventric|atri|terminat|position))",
        r"\bdrains?\b",
        r"\bport-?a-?cath\b",
        r"\bstents?\b",
    ),
}
# Normal statements: negative mentions of the named labels.
NORMALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        r"\b(?:heart|cardiac)(?:\s+size|\s+silhouette|\s+contours?)?" + W + r"{0,40}?\b"
        r"(?:normal|within\s+normal\s+limits|unremarkable|not\s+enlarged)",
        ("Cardiomegaly",),
    ),
    (r"\bnormal\s+(?:heart|cardiac)(?:\s+size|\s+silhouette)?", ("Cardiomegaly",)),
    (
        r"\b(?:cardio)?mediastin\w*" + W + r"{0,40}?\b(?:normal|unremarkable|within\s+normal"
        r"\s+limits|not\s+widened)",
        ("Enlarged Cardiomediastinum",),
    ),
    (r"\bnormal\s+(?:cardio)?mediastin\w*", ("Enlarged Cardiomediastinum",)),
    (
        r"\blungs?(?:\s+fields?)?\s+(?:are|is)?\s*(?:otherwise\s+)?(?:well[- ]expanded\s+and\s+)?"
        r"clear\b|\bclear\s+lungs\b",
        ("Consolidation", "Lung Opacity"),
    ),
)
_UNCERTAIN_PRE = re.compile(
    r"\b(?:possibl[ey]|probabl[ey]|questionabl[ey]|question\s+of|may|might|could|likely|"
    r"suggest\w*|concerning\s+for|concern\s+for|suspicious|suspect\w*|worrisome|"
    r"cannot\s+(?:be\s+)?(?:entirely\s+)?(?:exclude\w*|ruled?\s+out)|can\s*not\s+exclude|"
    r"can't\s+exclude|not\s+(?:be\s+)?excluded|differential|versus|vs|equivocal|borderline|"
    r"indeterminate|evaluate\s+for|eval\s+for|assess\s+for|rule\s+out|r/o|presum\w*|"
    r"in\s+question|uncertain|atypical)\b"
)
_UNCERTAIN_POST = re.compile(
    r"^\W*(?:\w+\W+){0,4}?(?:cannot\s+(?:be\s+)?(?:entirely\s+)?(?:excluded|ruled\s+out)|"
    r"can\s*not\s+be\s+(?:excluded|ruled\s+out)|(?:is|are)\s+not\s+(?:entirely\s+)?excluded|"
    r"not\s+ruled\s+out|(?:is|are)\s+(?:possible|likely|suspected|questioned)|"
    r"(?:may|might|could)\s+(?:be|represent|reflect|relate)|versus|vs\b|or\s+(?:atelecta|"
    r"pneumoni|consolidat|edema|effusion|aspiration|scar))"
)
_NEGATION_PRE = re.compile(
    r"\b(?:no|not|without|negative\s+for|free\s+of|clear\s+of|absence\s+of|absent|"
    r"ruled\s+out|resolution\s+of|resolved|removal\s+of|removed|never|nor|neither)\b"
)
_NEGATION_POST = re.compile(
    r"^\W*(?:\w+\W+){0,4}?(?:(?:has|have)\s+(?:since\s+)?(?:been\s+)?(?:resolved|removed|"
    r"withdrawn)|resolved|(?:is|are|was|were)\s+(?:no\s+longer|not)\s+(?:seen|visualized|"
    r"identified|present|evident|appreciated|demonstrated|visible|enlarged)|"
    r"(?:is|are)\s+(?:absent|gone)|(?:is|are)\s+(?:now\s+)?removed)"
)
# "and" + one of these starts a new statement ("no pneumothorax and a large effusion"); a bare
# "and" continues the negated list ("no pneumothorax and effusion", "no A and no B").
_AND_NEW = (
    r"a|an|the|there|this|these|that|its|small|smaller|tiny|trace|minimal|mild|moderate|"
    r"large|larger|severe|extensive|marked|new|persistent|residual|interval|increas\w*|"
    r"decreas\w*|worsen\w*|improv\w*"
)
# Words that end a pre-cue's scope between the cue and the mention.
_SCOPE_BREAK = re.compile(
    r"\b(?:but|however|although|though|whereas|except|aside\s+from|other\s+than|which|"
    r"(?:is|are|was|were)\s+(?:seen|noted|present|identified|demonstrated|visualized|"
    r"unchanged|stable|again|now)|there\s+(?:is|are)|and\s+(?=(?:" + _AND_NEW + r")\b)|"
    r"with\s+(?:a|an|new|interval|increas\w*|decreas\w*|persistent|small|large|moderate|mild)|"
    r"unchanged|stable)\b"
)
_NO_CHANGE = re.compile(r"\bno\s+(?:significant\s+|appreciable\s+|interval\s+|definite\s+)*change")
_RANK = {None: 0, NEGATIVE: 1, UNCERTAIN: 2, POSITIVE: 3}
_SPECIFIC_OPACITY = ("Consolidation", "Edema", "Atelectasis", "Pneumonia", "Lung Lesion")
_IMPLIES = {"Consolidation": "Lung Opacity", "Edema": "Lung Opacity", "Pneumonia": "Lung Opacity"}
_IMPLIES_ECM = {"Cardiomegaly": "Enlarged Cardiomediastinum"}
_COMPILED = {k: [re.compile(p) for p in v] for k, v in MENTIONS.items()}
_NORMALS = [(re.compile(p), names) for p, names in NORMALS]


def _body(text: str) -> str:
    """The text without the sections that do not describe this exam."""
    parts = _HEADER.split(text)
    keep = [parts[0]]
    for i in range(1, len(parts) - 1, 2):
        if parts[i] not in _SKIP_SECTIONS:
            keep.append(parts[i + 1])
    return " ".join(keep)


def sentences(text: str) -> list[str]:
    """Lowercased sentences of the finding-bearing sections."""
    body = re.sub(r"\s+", " ", _body(text)).lower()
    body = _NO_CHANGE.sub("unchanged", body)
    parts = re.split(r"(?<!\d)\.(?!\d)|\.(?=\s)|[;?!]|\s-\s|:\s", body)
    return [p.strip() for p in parts if p.strip()]


def _status(sent: str, start: int, end: int) -> float:
    before = sent[:start]
    # the clause the mention is in: after the last scope break before it
    breaks = [m.end() for m in _SCOPE_BREAK.finditer(before)]
    clause = before[breaks[-1] :] if breaks else before
    span = sent[start:end]
    after = sent[end:]
    neg = _NEGATION_PRE.search(clause)
    unc = _UNCERTAIN_PRE.search(clause)
    if neg and (unc is None or neg.start() < unc.start()):
        return NEGATIVE  # "no findings to suggest pneumonia": the negation governs the hedge
    if unc or _UNCERTAIN_POST.search(after):
        return UNCERTAIN
    if re.search(r"\b(?:not|no)\b", span) or _NEGATION_POST.search(after):
        return NEGATIVE
    return POSITIVE


def _merge(a: float | None, b: float | None) -> float | None:
    return a if _RANK[a] >= _RANK[b] else b


def label_report(text: str) -> dict[str, float | None]:
    """CheXpert-style labels of one report (see the module docstring for the rules)."""
    out: dict[str, float | None] = {name: None for name in CHEXPERT_LABELS}
    for sent in sentences(text):
        found: dict[str, list[float]] = {}
        for name, pats in _COMPILED.items():
            for pat in pats:
                for m in pat.finditer(sent):
                    found.setdefault(name, []).append(_status(sent, m.start(), m.end()))
        if "Lung Opacity" in found and any(k in found for k in _SPECIFIC_OPACITY):
            del found["Lung Opacity"]  # the opacity is attributed to the named finding
        for name, vals in found.items():
            for v in vals:
                out[name] = _merge(out[name], v)
        for pat, names in _NORMALS:
            if pat.search(sent) and not _UNCERTAIN_PRE.search(sent):
                for name in names:
                    out[name] = _merge(out[name], NEGATIVE)
    for src, dst in {**_IMPLIES, **_IMPLIES_ECM}.items():
        if out[src] in (POSITIVE, UNCERTAIN):
            out[dst] = _merge(out[dst], out[src])
    pathologies = [n for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices")]
    if not any(out[n] in (POSITIVE, UNCERTAIN) for n in pathologies):
        out["No Finding"] = POSITIVE
    return out


def ce_scores(
    pred_labels: Mapping[str, Mapping[str, float | None]],
    ref_labels: Mapping[str, Mapping[str, float | None]],
    *,
    prefix: str = "ce",
    per_finding: bool = True,
) -> tuple[dict[str, float], list[str]]:
    """(metrics, left-out findings) of `pred_labels[id]` against `ref_labels[id]` over the 14
    CHEXPERT_LABELS. A label is positive when it is 1.0; uncertain (-1.0), negative, blank and
    absent all count as negative, as in the R2Gen-family CE scripts. Keys `<prefix>/precision`,
    `<prefix>/recall`, `<prefix>/f1` (micro over labels and reports) and, with `per_finding`,
    `<prefix>/<label>/f1` for the labels with a positive on either side; the others (no F1 to
    speak of, e.g. a finding the data never shows) are returned as left out, in label order."""
    missing = [k for k in ref_labels if k not in pred_labels]
    if missing:
        raise ValueError(f"{len(missing)} reports without a prediction, e.g. {missing[:5]}")
    tp = {n: 0 for n in CHEXPERT_LABELS}
    fp = dict(tp)
    fn = dict(tp)
    for rid, ref in ref_labels.items():
        pred = pred_labels[rid]
        for n in CHEXPERT_LABELS:
            p, r = pred.get(n) == POSITIVE, ref.get(n) == POSITIVE
            tp[n] += p and r
            fp[n] += p and not r
            fn[n] += r and not p
    out: dict[str, float] = {}
    t, f_p, f_n = sum(tp.values()), sum(fp.values()), sum(fn.values())
    prec = t / (t + f_p) if t + f_p else 0.0
    rec = t / (t + f_n) if t + f_n else 0.0
    out[f"{prefix}/precision"], out[f"{prefix}/recall"] = prec, rec
    out[f"{prefix}/f1"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    left_out = [n for n in CHEXPERT_LABELS if not (tp[n] + fp[n] + fn[n])]
    if per_finding:
        for n in CHEXPERT_LABELS:
            if n not in left_out:
                out[f"{prefix}/{n}/f1"] = 2 * tp[n] / (2 * tp[n] + fp[n] + fn[n])
    return out, left_out


def ce_report(
    pred_texts: Mapping[str, str], ref_texts: Mapping[str, str]
) -> tuple[dict[str, float], list[str]]:
    """Clinical efficacy of generated reports: our labeler's findings in `pred_texts[id]`
    against its findings in the reference `ref_texts[id]` (labeler vs labeler, so both sides are
    read by the same rules). (metrics, left-out findings) as ce_scores, prefix `ce`."""
    missing = [k for k in ref_texts if k not in pred_texts]
    if missing:
        raise ValueError(f"{len(missing)} reports without a prediction, e.g. {missing[:5]}")
    preds = {k: label_report(pred_texts[k]) for k in ref_texts}
    refs = {k: label_report(v) for k, v in ref_texts.items()}
    return ce_scores(preds, refs)


def ce_metrics(pred_texts: Mapping[str, str], ref_texts: Mapping[str, str]) -> dict[str, float]:
    """The metrics of ce_report (left-out findings dropped; use ce_report to list them)."""
    return ce_report(pred_texts, ref_texts)[0]
