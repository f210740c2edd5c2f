"""Templated radiology reports for synthetic findings, and their CheXpert-style labels.

Every drawn finding is stated (definitely, or hedged for `Finding.hedged`) in each section that
carries findings, so text and image agree. Negative mentions give 0.0, hedged ones -1.0,
unmentioned labels stay None. A finding may be compared with a prior study ("unchanged",
"new", "increased", "no change from the prior"): still present, same labels. Pneumonia follows
the drawn pattern (`Finding.pneumonia`, consolidation only): stated (1.0) or hedged (-1.0) with
the finding; a consolidation without it gets an alternative explanation (blank) or an explicit
negative (0.0), as CheXpert labels them. Injected PHI (phi.py) stays wrapped in marker
characters in the rendered sections; `phi.strip_phi_markers` removes them and returns the
ground-truth spans.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medtrain.data.labels import CHEXPERT_LABELS, NEGATIVE, POSITIVE, UNCERTAIN
from medtrain.synth.phantom import Finding
from medtrain.synth.phi import MARKED, mark_phi, marked_age, phi_sentence

# Labels each finding kind asserts (hedged findings assert them as -1.0).
FINDING_LABELS: dict[str, tuple[str, ...]] = {
    "consolidation": ("Consolidation", "Lung Opacity"),
    "effusion": ("Pleural Effusion",),
    "cardiomegaly": ("Cardiomegaly", "Enlarged Cardiomediastinum"),
    "pneumothorax": ("Pneumothorax",),
    "nodule": ("Lung Lesion",),
    "device": ("Support Devices",),
    "edema": ("Edema", "Lung Opacity"),
    "atelectasis": ("Atelectasis",),
}
# Words a report uses for each finding kind (tests check text/label agreement with these).
FINDING_WORDS: dict[str, tuple[str, ...]] = {
    "consolidation": ("consolidation",),
    "effusion": ("effusion",),
    "cardiomegaly": ("cardiomegaly", "enlarged", "enlargement"),
    "pneumothorax": ("pneumothorax",),
    "nodule": ("nodule",),
    "device": ("tube", "catheter", "line", "pacemaker"),
    "edema": ("edema",),
    "atelectasis": ("atelectasis",),
}
_RANK = {None: 0, NEGATIVE: 1, UNCERTAIN: 2, POSITIVE: 3}  # merge: positive wins, then uncertain

# --- sentence libraries: (findings-section phrasings, impression phrasings) --------------------
_POS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "consolidation": (
        (
            "There is a focal consolidation in the {loc}.",
            "Patchy opacity in the {loc} is consistent with consolidation.",
            "{Loc} airspace consolidation is present.",
            "Consolidation is seen in the {loc}.",
        ),
        ("{Loc} consolidation.", "Focal consolidation in the {loc}."),
    ),
    "effusion": (
        (
            "There is a {sev} {side} pleural effusion.",
            "{Sev} {side} pleural effusion with blunting of the costophrenic angle.",
            "Blunting of the {side} costophrenic angle is consistent with a {sev} effusion.",
            "A {sev} {side} effusion is present.",
        ),
        ("{Sev} {side} pleural effusion.", "{Sev} {side} effusion."),
    ),
    "cardiomegaly": (
        (
            "The heart is {adv} enlarged.",
            "There is {sev} cardiomegaly.",
            "{Sev} enlargement of the cardiac silhouette.",
            "The cardiac silhouette is {adv} enlarged, compatible with cardiomegaly.",
        ),
        ("{Sev} cardiomegaly.", "Cardiomegaly."),
    ),
    "pneumothorax": (
        (
            "There is a {sev} {side} apical pneumothorax.",
            "A {sev} {side} pneumothorax is seen with a visible pleural line at the apex.",
            "{Sev} {side}-sided pneumothorax.",
            "New {side} pneumothorax, {sev} in size.",
        ),
        ("{Sev} {side} pneumothorax.", "{Side} pneumothorax, {sev}."),
    ),
    "nodule": (
        (
            "There is a {mm} mm nodule in the {loc}.",
            "A rounded nodule projects over the {loc}.",
            "{Loc} nodule measuring {mm} mm.",
        ),
        ("{Loc} nodule; CT is recommended for further evaluation.", "{mm} mm {loc} nodule."),
    ),
    "edema": (
        (
            "There is mild pulmonary edema with perihilar haziness.",
            "Bilateral perihilar opacities are consistent with interstitial edema.",
            "Pulmonary vascular congestion with mild interstitial edema.",
        ),
        ("Mild pulmonary edema.", "Interstitial pulmonary edema."),
    ),
    "atelectasis": (
        (
            "Linear opacity at the {side} base is consistent with atelectasis.",
            "There is plate-like atelectasis in the {loc}.",
            "{Side} basilar atelectasis.",
            "Subsegmental atelectasis in the {loc}.",
        ),
        ("{Side} basilar atelectasis.", "Atelectasis in the {loc}."),
    ),
}
_HEDGED: dict[str, tuple[str, ...]] = {
    "consolidation": (
        "Possible subtle consolidation in the {loc}.",
        "Ill-defined opacity in the {loc} may represent early consolidation.",
        "A {loc} consolidation cannot be excluded.",
    ),
    "effusion": (
        "Possible small {side} pleural effusion.",
        "A trace {side} pleural effusion cannot be excluded.",
        "Questionable small {side} effusion.",
    ),
    "pneumothorax": (
        "Possible tiny {side} apical pneumothorax.",
        "A small {side} pneumothorax cannot be excluded.",
    ),
    "edema": ("Possible mild pulmonary edema.", "Perihilar haziness may reflect mild edema."),
    "atelectasis": ("Possible {side} basilar atelectasis.", "Likely {side} basilar atelectasis."),
}
_DEVICES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ett": (
        (
            "Endotracheal tube terminates {cm} cm above the carina.",
            "An endotracheal tube is in standard position.",
        ),
        ("Endotracheal tube in appropriate position.",),
    ),
    "cvc": (
        (
            "Right internal jugular central venous catheter terminates in the SVC.",
            "A right IJ central line is seen with tip in the mid SVC.",
        ),
        ("Right internal jugular line with tip in the SVC.",),
    ),
    "pacemaker": (
        (
            "Left chest wall pacemaker with lead terminating in the right ventricle.",
            "A left-sided pacemaker is present with a single lead in the right ventricle.",
        ),
        ("Left-sided pacemaker in place.",),
    ),
}
# Negative mentions: (sentences, labels set to 0.0, finding kinds whose presence forbids them)
_NEG: tuple[tuple[tuple[str, ...], tuple[str, ...], frozenset[str]], ...] = (
    (
        ("No pleural effusion or pneumothorax.", "There is no pleural effusion or pneumothorax."),
        ("Pleural Effusion", "Pneumothorax"),
        frozenset({"effusion", "pneumothorax"}),
    ),
    (
        ("No pleural effusion.", "There is no evidence of pleural effusion.", "No effusion."),
        ("Pleural Effusion",),
        frozenset({"effusion"}),
    ),
    (
        ("No pneumothorax.", "There is no evidence of pneumothorax.", "No pneumothorax is seen."),
        ("Pneumothorax",),
        frozenset({"pneumothorax"}),
    ),
    (
        ("The lungs are clear.", "Lungs are clear.", "The lungs are well expanded and clear."),
        ("Consolidation", "Lung Opacity"),
        frozenset({"consolidation", "edema", "atelectasis", "nodule", "pneumothorax", "effusion"}),
    ),
    (
        ("No focal consolidation.", "There is no focal consolidation."),
        ("Consolidation",),
        frozenset({"consolidation"}),
    ),
    (
        ("Heart size is normal.", "The heart is not enlarged.", "Normal heart size."),
        ("Cardiomegaly",),
        frozenset({"cardiomegaly"}),
    ),
    (
        ("The mediastinal contours are normal.", "Mediastinal and hilar contours are normal."),
        ("Enlarged Cardiomediastinum",),
        frozenset({"cardiomegaly"}),
    ),
    (
        ("No pulmonary edema.", "There is no pulmonary vascular congestion or edema."),
        ("Edema",),
        frozenset({"edema"}),
    ),
    (
        ("No evidence of pneumonia.", "No findings to suggest pneumonia."),
        ("Pneumonia",),
        frozenset({"consolidation"}),
    ),
    (
        ("No displaced rib fracture.", "No acute fracture is seen."),
        ("Fracture",),
        frozenset(),
    ),
)
# Pneumonia wording for a consolidation (reports.py _pneumonia_sentence).
_PNA_POS = (
    "Findings are consistent with lobar pneumonia.",
    "Compatible with pneumonia in the appropriate clinical setting.",
    "The appearance is typical of pneumonia.",
    "Findings are consistent with pneumonia.",
    "Findings are compatible with multifocal pneumonia.",
)
_PNA_HEDGED = (
    "Pneumonia cannot be excluded.",
    "This may represent early pneumonia.",
    "Possible developing pneumonia.",
)
_PNA_ALTERNATIVE = (  # no pneumonia mention: the label stays blank
    "This likely reflects aspiration.",
    "Findings may reflect scarring or aspiration.",
    "Likely non-infectious, correlate clinically.",
)
_PNA_NEG = (
    "No radiographic evidence of pneumonia.",
    "Appearance is not typical of pneumonia.",
)
# Comparison with a prior study, after a finding's sentence (label unchanged: still present).
_COMPARE_ANY = (
    "This is new compared to the prior study.",
    "Unchanged compared to prior.",
    "No change from the prior radiograph.",
    "Increased since the prior examination.",
    "Slightly decreased compared to prior.",
    "Not present on the prior study.",
    "Stable from prior.",
)
_COMPARE: dict[str, tuple[str, ...]] = {
    "consolidation": _COMPARE_ANY + ("The opacity has increased in extent since prior.",),
    "effusion": _COMPARE_ANY + ("The effusion has increased in size since the prior study.",),
    "cardiomegaly": ("Unchanged compared to prior.", "Stable from prior.", "No change."),
    "pneumothorax": _COMPARE_ANY + ("The pneumothorax is slightly larger than on the prior.",),
    "nodule": ("Unchanged in size compared to prior.", "New compared to the prior study.")
    + ("Slightly increased in size since prior.", "Stable from prior."),
    "edema": _COMPARE_ANY + ("Edema has worsened compared to prior.",),
    "atelectasis": _COMPARE_ANY,
}
_INDICATIONS = (
    "{ph}-year-old man with cough, evaluate for pneumonia.",
    "{ph} with shortness of breath.",
    "Chest pain.",
    "History: {ph}F with fever.",
    "Evaluate for interval change.",
)
# Hospital style (placeholder=None): the same indications with a real age ({age} > 89 is PHI).
_INDICATIONS_RAW = (
    "{age}-year-old man with cough, evaluate for pneumonia.",
    "{age} y/o woman with shortness of breath.",
    "Chest pain.",
    "History: {age}F with fever.",
    "Evaluate for interval change.",
)
_NORMAL_IMPRESSION = (
    "No acute cardiopulmonary process.",
    "No acute intrathoracic abnormality.",
    "No acute cardiopulmonary abnormality.",
)
# Clinical sentences that look like PHI to a careless scrubber (eponyms, vertebral levels,
# measurements, views, role words); label-neutral. Never marked as PHI.
_DISTRACTORS = (
    "PA and lateral views of the chest were obtained.",
    "Single portable AP view of the chest.",
    "Mild degenerative changes of the thoracic spine, most pronounced at T11-T12.",
    "Calcification of the aortic knob is noted.",
    "The visualized upper abdomen is unremarkable.",
    "Recommend follow-up per Fleischner Society guidelines.",
    "Findings were discussed with the referring physician.",
    "Please see the concurrent CT of the abdomen and pelvis for details.",
    "Mild dextroscoliosis of the thoracic spine.",
    "The right hemidiaphragm is elevated by approximately 2.5 cm.",
    "No Hampton hump or Westermark sign.",
    "Follow-up radiograph in 6-8 weeks is recommended to document resolution.",
    "Osseous structures from C7 through L1 are unremarkable.",
    "Evaluation of the left costophrenic angle is limited on the AP view.",
    "History of Hodgkin lymphoma, status post chemotherapy.",
    "The study was reviewed by the attending radiologist.",
    "Two views of the chest, 3 images in total.",
)
_NO_KERLEY = "No Kerley B lines."  # only in reports without edema
_SEV = {"small": "small", "moderate": "moderate", "large": "large", "mild": "mild", "": "small"}
_ADV = {"mild": "mildly", "moderate": "moderately", "large": "markedly", "": "mildly"}


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _pneumonia_sentence(rng: np.random.Generator, f: Finding) -> tuple[str, float | None]:
    """What a radiologist adds about pneumonia for a consolidation, and the CheXpert value.

    Drawn pneumonia pattern: stated (1.0), or hedged (-1.0) when the finding is hedged. No
    pneumonia pattern: an alternative explanation (no pneumonia mention: None) or an explicit
    negative (0.0). Two draws per consolidation, always."""
    q, i = rng.random(), rng.random()
    if f.pneumonia:
        options, value = (_PNA_HEDGED, UNCERTAIN) if f.hedged else (_PNA_POS, POSITIVE)
    elif q < 0.55:
        options, value = _PNA_ALTERNATIVE, None
    else:
        options, value = _PNA_NEG, NEGATIVE
    return options[int(i * len(options))], value


# --- rendering -------------------------------------------------------------------------------
@dataclass(kw_only=True, slots=True)
class RenderedReport:
    """sections: (HEADER, body) in order, bodies may hold PHI markers; labels: 14 CheXpert."""

    sections: list[tuple[str, str]]
    labels: dict[str, float | None] = field(default_factory=dict)


def _loc(f: Finding) -> str:
    if f.side == "left" and f.zone == "middle":
        return "lingula"
    return f"{f.side} {f.zone or 'lower'} lobe"


def _fill(template: str, f: Finding, sizes: tuple[int, int]) -> str:
    """Fill a phrase; sizes = (nodule mm, tube tip cm above carina), fixed per report."""
    sev = _SEV.get(f.severity, "small")
    loc = _loc(f)
    return template.format(
        loc=loc,
        Loc=loc[0].upper() + loc[1:],
        side=f.side,
        Side=f.side.capitalize(),
        sev=sev,
        Sev=sev.capitalize(),
        adv=_ADV.get(f.severity, "mildly"),
        mm=sizes[0],
        cm=sizes[1],
    )


def _set(labels: dict[str, float | None], names: Sequence[str], value: float) -> None:
    for name in names:
        if _RANK[value] > _RANK[labels[name]]:
            labels[name] = value


def render_report(
    rng: np.random.Generator,
    findings: Sequence[Finding],
    *,
    placeholder: str | None = "___",
    exam: str = "CHEST (PA AND LAT)",
    phi: bool = False,
    style: str = "mimic",
) -> RenderedReport:
    """Sections and labels for one study.

    placeholder: the dataset's own PHI mask ("___" MIMIC, "XXXX" Open-I); None writes a hospital
    report instead: real-looking (marked) names, dates, times and ages where a public data set
    has its mask, ages up to 89 unmarked (not PHI).
    Every report may carry label-neutral distractor sentences (eponyms, vertebral levels,
    measurements) that a de-identifier must leave alone.
    style: "mimic" (EXAMINATION/INDICATION/COMPARISON sometimes) or "openi" (COMPARISON and
    INDICATION always, as in the Open-I XML).
    """
    sizes = (int(rng.integers(6, 15)), int(rng.integers(3, 6)))
    labels: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    kinds = {f.kind for f in findings}
    r = rng.random()
    has_find, has_imp = (True, True) if r < 0.82 else (r >= 0.91, r < 0.91)
    find: list[str] = []
    imp: list[str] = []
    for f in findings:
        value = UNCERTAIN if f.hedged else POSITIVE
        _set(labels, FINDING_LABELS[f.kind], value)
        if f.kind == "device":
            fp, ip = _DEVICES[f.device]
        elif f.hedged:
            fp = ip = _HEDGED[f.kind]
        else:
            fp, ip = _POS[f.kind]
        find.append(_fill(_pick(rng, fp), f, sizes))
        imp.append(_fill(_pick(rng, ip), f, sizes))
        # comparison with a prior study (a stated finding only: "larger than before" asserts it)
        if f.kind != "device" and rng.random() < 0.35 and not f.hedged:
            find.append(_pick(rng, _COMPARE[f.kind]))
    for f in findings:  # pneumonia follows the drawn (infectious) consolidation pattern
        if f.kind == "consolidation":
            sentence, value = _pneumonia_sentence(rng, f)
            (imp if has_imp else find).append(sentence)
            if value is not None:
                _set(labels, ("Pneumonia",), value)
    neg_target = find if has_find else imp
    p_neg = 0.6 if has_find else 0.25
    mentioned: set[str] = set()
    for sentences, names, forbidden in _NEG:
        if kinds & forbidden or mentioned & set(names) or rng.random() >= p_neg:
            continue
        neg_target.append(_pick(rng, sentences))
        _set(labels, names, NEGATIVE)
        mentioned |= set(names)
    pathologies = [n for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices")]
    if not any(labels[n] in (POSITIVE, UNCERTAIN) for n in pathologies):
        labels["No Finding"] = POSITIVE
        normal = _pick(rng, _NORMAL_IMPRESSION)
        if placeholder == "XXXX" and not kinds and rng.random() < 0.3:
            normal = "Normal chest XXXX."  # Open-I masks "x-ray" as XXXX in places
        (imp if has_imp else find).append(normal)
    if rng.random() < 0.15:  # the dataset's own masked PHI (not ground truth), or real PHI
        if placeholder is None:
            name = mark_phi(rng, "NAME")
            line = f"Findings discussed with {name} at {mark_phi(rng, 'TIME')}."
        else:
            line = f"Findings discussed with Dr. {placeholder} at {placeholder}."
        (imp if has_imp else find).append(line)
    if rng.random() < 0.4:
        target = find if has_find else imp
        options = _DISTRACTORS + (() if "edema" in kinds else (_NO_KERLEY,))
        for _ in range(1 + int(rng.random() < 0.3)):
            target.insert(int(rng.integers(len(target) + 1)), _pick(rng, options))
    if phi:
        for _ in range(int(rng.integers(1, 4))):
            target = find if has_find and (not has_imp or rng.random() < 0.5) else imp
            target.insert(int(rng.integers(len(target) + 1)), phi_sentence(rng))

    sections: list[tuple[str, str]] = []
    openi = style == "openi"
    if placeholder is None:
        date = mark_phi(rng, "DATE")
        comparison = _pick(rng, (f"{date}.", "None.", f"Chest radiograph from {date}."))
        indication = _pick(rng, _INDICATIONS_RAW).format(age=marked_age(rng))
    else:
        ph = placeholder
        comparison = _pick(rng, (f"{ph}.", "None.", f"Chest radiograph from {ph}."))
        indication = _pick(rng, _INDICATIONS).format(ph=ph)
    if openi:
        sections += [("COMPARISON", comparison), ("INDICATION", indication)]
    else:  # MIMIC: a few reports carry EXAMINATION / INDICATION / COMPARISON headers
        q = rng.random(3)
        if q[0] < 0.35:
            sections.append(("EXAMINATION", exam))
        if q[1] < 0.5:
            sections.append(("INDICATION", indication))
        if q[2] < 0.45:
            sections.append(("COMPARISON", comparison))
    if has_find:
        sections.append(("FINDINGS", " ".join(find)))
    if has_imp:
        sections.append(("IMPRESSION", " ".join(imp)))
    return RenderedReport(sections=sections, labels=labels)


def mimic_text(rng: np.random.Generator, sections: Sequence[tuple[str, str]]) -> str:
    """MIMIC-CXR style free text: optional FINAL REPORT banner, headers, lines wrapped at 78."""
    lines = [" " * 33 + "FINAL REPORT"] if rng.random() < 0.8 else []
    for header, body in sections:
        # Keep PHI values unbroken by wrapping: spaces inside markers become \x04 meanwhile.
        protected = MARKED.sub(lambda m: m.group(0).replace(" ", "\x04"), body)
        wrapped = textwrap.wrap(protected, width=76, break_long_words=False, break_on_hyphens=False)
        wrapped = [w.replace("\x04", " ") for w in wrapped]
        if header in ("FINDINGS", "IMPRESSION") and rng.random() < 0.6:
            lines += [f" {header}:", " "] + [f" {w}" for w in wrapped] + [" "]
        else:
            first, rest = (wrapped[0], wrapped[1:]) if wrapped else ("", [])
            lines += [f" {header}:  {first}"] + [f" {w}" for w in rest] + [" "]
    return "\n".join(lines).rstrip() + "\n"
