"""Templated radiology reports for synthetic findings, their CheXpert-style labels, and PHI.

Every drawn finding is stated (definitely, or hedged for `Finding.hedged`) in each section that
carries findings, so text and image agree. Negative mentions give 0.0, hedged ones -1.0,
unmentioned labels stay None. Injected PHI is wrapped in marker characters while the text is
built; `strip_phi_markers` removes them and returns the ground-truth spans.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medtrain.data.labels import CHEXPERT_LABELS, NEGATIVE, POSITIVE, UNCERTAIN
from medtrain.synth.phantom import Finding

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
        ("No displaced rib fracture.", "No acute fracture is seen."),
        ("Fracture",),
        frozenset(),
    ),
)
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

# --- PHI -------------------------------------------------------------------------------------
PHI_START, PHI_SEP, PHI_END = "\x02", "\x1f", "\x03"
_MARKED = re.compile("\x02([A-Z]+)\x1f(.*?)\x03", re.DOTALL)
# Fake people: common names and rarer ones (a name gazetteer cannot know every name).
_FIRST = (
    "John", "Mary", "Robert", "Linda", "James", "Patricia", "Wei", "Aisha", "Carlos", "Anna",
    "Michael", "Jennifer", "David", "Susan", "Ahmed", "Fatima", "Hiroshi", "Yuki", "Olga",
    "Dmitri", "Priya", "Rahul", "Chinedu", "Ngozi", "Sven", "Ingrid", "Mateo", "Lucia", "Kwame",
    "Thandiwe", "Zebulon", "Eamon", "Siobhan", "Tariq", "Leilani", "Bartholomew",
)  # fmt: skip
_LAST = (
    "Smith", "Doe", "Johnson", "Nguyen", "Garcia", "Okafor", "Kowalski", "Chen", "Patel",
    "Williams", "Martinez", "Kim", "Singh", "Cohen", "Schmidt", "Rossi", "Haddad", "Ivanova",
    "Yamamoto", "O'Brien", "McAllister", "Fitzgerald", "Abernathy", "Quackenbush", "Oyelaran",
    "Thorsdottir", "Smith-Jones", "Delacroix", "Nakamura", "Petrov", "Fernandes", "Adeyemi",
    "Lindqvist", "Papadopoulos", "Wojcik",
)  # fmt: skip
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_HOSPITALS = (
    "Mercy General Hospital", "St. Mary's Medical Center", "Lakeside Community Hospital",
    "Riverside Health Center", "Saint Luke's Hospital", "Northwood Clinic",
    "County General Hospital", "Brigham and Women's Hospital", "Children's Hospital of Fairview",
    "Massachusetts General Hospital", "Beth Israel Deaconess Medical Center",
    "Valley View Regional Medical Center",
)  # fmt: skip
_STREETS = ("Main", "Elm", "Oak", "Maple", "Washington", "Harbor", "Cedar", "Highland", "Park")
_STREET_TYPES = ("Street", "St.", "Avenue", "Ave", "Road", "Rd.", "Boulevard", "Blvd", "Lane")
_CITIES = ("Boston", "Springfield", "Riverside", "Fairview", "Madison", "Georgetown")
_STATES = ("MA", "IL", "CA", "NY", "TX", "OH")
_DOMAINS = ("mercyhealth.org", "stmarys-hospital.org", "radiology.example.edu", "lakesidemed.com")
# Slots in sentences -> ground-truth kind (slots not listed are their own kind).
_SLOT_KIND = {"SSN": "ID", "PAGER": "PHONE"}
_PHI_SENTENCES = (
    "Findings were discussed with {NAME} by telephone at {TIME} on {DATE}.",
    "These findings were communicated to {NAME} at {TIME}.",
    "The findings were called to {NAME} at {TIME} on {DATE}.",
    "Discussed with {NAME} on {DATE} at {TIME}.",
    "{NAME} was notified of the findings at {TIME}.",
    "Compared with the prior radiograph dated {DATE}.",
    "Comparison is made to the outside study from {HOSPITAL} dated {DATE}.",
    "Prior imaging from {HOSPITAL} on {DATE} is not available for comparison.",
    "Report for {NAME}, MRN {MRN}.",
    "Patient: {NAME}. MRN: {MRN}.",
    "MR# {MRN}.",
    "Medical record number {MRN}, accession {ACCESSION}.",
    "Accession number {ACCESSION}.",
    "ACC# {ACCESSION}.",
    "Order #{ID}.",
    "Encounter ID {ID}.",
    "SSN: {SSN}.",
    "Please contact {NAME} at {PHONE} with questions.",
    "Call back number {PHONE}.",
    "Results were faxed to {PHONE}.",
    "Page {NAME} at pager {PAGER} with any questions.",
    "Reading room extension {PAGER}.",
    "Dictated by {NAME} on {DATE}.",
    "Electronically signed by {NAME}, MD on {DATE} at {TIME}.",
    "Attending radiologist: {NAME}.",
    "Read by {NAME}; reviewed with {NAME}.",
    "The patient is a {AGE}-year-old woman.",
    "{AGE} y/o male with hypoxia.",
    "Age: {AGE}.",
    "History: {AGE}M with dyspnea.",
    "Patient aged {AGE} with chronic cough.",
    "Images are available at {URL}.",
    "See {URL} for the full report.",
    "Questions may be sent to {EMAIL}.",
    "Contact {NAME} ({EMAIL}).",
    "Patient address on file: {ADDRESS}.",
    "Outside films from {HOSPITAL}, {ADDRESS}, were reviewed.",
    "Transferred from {HOSPITAL} on {DATE}.",
    "Study performed on {DATE} at {TIME}.",
)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _name(r: list[int]) -> str:
    first, last = _FIRST[r[0] % len(_FIRST)], _LAST[r[1] % len(_LAST)]
    mid = chr(65 + r[2] % 26)
    forms = (
        f"Dr. {last}", f"Dr. {first} {last}", f"{first} {mid}. {last}", f"{first} {last}",
        f"Ms. {last}", f"Mr. {last}", f"Mrs. {last}", f"{last.upper()}, {first.upper()}",
        f"{last.upper()}, {first.upper()} {mid}", f"{last}, {first}", f"Dr. {first} {mid}. {last}",
        f"Dr. {first[0]}. {last}", f"dr. {last.lower()}", f"Doctor {last}",
    )  # fmt: skip
    return forms[r[3] % len(forms)]


def _date(r: list[int]) -> str:
    y, m, d = 2000 + r[0] % 25, 1 + r[1] % 12, 1 + r[2] % 28
    month = _MONTHS[m - 1]
    mon = month if len(month) <= 4 else month[:3] + "."
    nth = f"{d}{'th' if 10 <= d <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"
    forms = (
        f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}",
        f"{month} {d}, {y}", f"{d} {month[:3]} {y}", f"{mon} {d}, {y}", f"{month} {nth}",
        f"{month} {y}", f"{d:02d}-{month[:3].upper()}-{y}", f"{m}-{d}-{y}", f"{d:02d}.{m:02d}.{y}",
        f"{m}/{d}", f"{y}{m:02d}{d:02d}", f"{nth} of {month}, {y}", f"{y}/{m:02d}/{d:02d}",
    )  # fmt: skip
    return forms[r[3] % len(forms)]


def _time(r: list[int]) -> str:
    h, mi, sec = r[0] % 24, r[1] % 60, r[2] % 60
    h12, am = h % 12 or 12, h < 12
    forms = (
        f"{h:02d}:{mi:02d}", f"{h12}:{mi:02d} {'AM' if am else 'PM'}",
        f"{h12}:{mi:02d} {'a.m.' if am else 'p.m.'}", f"{h:02d}{mi:02d} hours",
        f"{h12}{'am' if am else 'pm'}", f"{h12} {'am' if am else 'pm'}",
        f"{h:02d}:{mi:02d}:{sec:02d}", f"{h12}:{mi:02d}{'am' if am else 'pm'}",
    )  # fmt: skip
    return forms[r[3] % len(forms)]


def _phone(r: list[int]) -> str:
    a, b, c = 200 + r[0] % 800, 200 + r[1] % 800, r[2] % 10000
    forms = (
        f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
        f"{a}-{b}-{c:04d} ext. {r[3] % 900 + 10}", f"1-{a}-{b}-{c:04d}",
    )  # fmt: skip
    return forms[r[3] % len(forms)]


def _address(r: list[int]) -> str:
    street = f"{1 + r[0] % 9000} {_STREETS[r[1] % len(_STREETS)]}"
    street += f" {_STREET_TYPES[r[2] % len(_STREET_TYPES)]}"
    city, state = _CITIES[r[1] % len(_CITIES)], _STATES[r[2] % len(_STATES)]
    zipcode = f"{r[0] % 100000:05d}"
    forms = (
        street, f"{street}, {city}, {state} {zipcode}", f"{street}, Apt {r[3] % 40 + 1}",
        f"{street}, Suite {100 + r[3] % 400}, {city}, {state} {zipcode}-{r[2] % 10000:04d}",
    )  # fmt: skip
    return forms[r[3] % len(forms)]


def _phi_value(rng: np.random.Generator, slot: str) -> str:
    """One fake PHI string for a sentence slot (NAME, DATE, ..., SSN, PAGER)."""
    r = rng.integers(0, 10**9, size=4).tolist()
    if slot == "NAME":
        return _name(r)
    if slot == "DATE":
        return _date(r)
    if slot == "TIME":
        return _time(r)
    if slot == "AGE":
        return str(90 + r[0] % 16)
    if slot == "MRN":
        return f"{r[0] % 10**8:08d}" if r[1] % 2 else f"{r[0] % 10**7:07d}"
    if slot == "ACCESSION":
        forms = (f"A{r[0] % 10**8:08d}", f"{r[0] % 10**8:08d}", f"E{r[0] % 10**7:07d}")
        return (*forms, f"RAD-{2000 + r[1] % 25}-{r[0] % 10**6:06d}")[r[3] % 4]
    if slot == "ID":
        return (f"{r[0] % 10**7:07d}", f"V{r[0] % 10**8:08d}", f"PT-{r[0] % 10**8:08d}")[r[3] % 3]
    if slot == "SSN":
        return f"{100 + r[0] % 800}-{10 + r[1] % 90}-{1000 + r[2] % 9000}"
    if slot == "PHONE":
        return _phone(r)
    if slot == "PAGER":
        return f"{r[0] % 90000 + 10000}" if r[1] % 2 else f"{r[0] % 9000 + 1000}"
    if slot in ("EMAIL", "URL"):
        first = _FIRST[r[0] % len(_FIRST)].lower()
        last = _LAST[r[1] % len(_LAST)].lower().replace("'", "")
        domain = _DOMAINS[r[2] % len(_DOMAINS)]
        if slot == "EMAIL":
            return (f"{first}.{last}@{domain}", f"{first[0]}{last}@{domain}")[r[3] % 2]
        forms = (f"https://pacs.{domain}/viewer?study={r[0] % 10**7}", f"www.{domain}/results")
        return (*forms, f"http://10.{r[1] % 256}.{r[2] % 256}.{r[3] % 256}/pacs")[r[3] % 3]
    if slot == "ADDRESS":
        return _address(r)
    if slot == "HOSPITAL":
        return _HOSPITALS[r[0] % len(_HOSPITALS)]
    raise ValueError(f"unknown PHI slot {slot!r}")


def mark_phi(rng: np.random.Generator, slot: str) -> str:
    """A fake PHI value for `slot`, wrapped in markers with its ground-truth kind."""
    return f"{PHI_START}{_SLOT_KIND.get(slot, slot)}{PHI_SEP}{_phi_value(rng, slot)}{PHI_END}"


def _phi_sentence(rng: np.random.Generator) -> str:
    """A sentence with PHI values wrapped in markers."""
    template = _pick(rng, _PHI_SENTENCES)
    out = template
    for slot in re.findall(r"\{([A-Z]+)\}", template):
        out = out.replace("{" + slot + "}", mark_phi(rng, slot), 1)
    return out.replace("." + PHI_END + ".", "." + PHI_END)  # "at 9:15 a.m.." -> "a.m."


def _age(rng: np.random.Generator) -> str:
    """A patient age 20..104 as written; ages over 89 are PHI and come marked."""
    age = int(rng.integers(20, 105))
    return f"{PHI_START}AGE{PHI_SEP}{age}{PHI_END}" if age > 89 else str(age)


def strip_phi_markers(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Remove PHI markers; return the clean text and [(start, end, kind), ...] into it."""
    out, spans, pos = [], [], 0
    length = 0
    for m in _MARKED.finditer(text):
        out.append(text[pos : m.start()])
        length += m.start() - pos
        value = m.group(2)
        spans.append((length, length + len(value), m.group(1)))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), spans


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
    if any(f.kind == "consolidation" and not f.hedged for f in findings):
        q = rng.random()
        if q < 0.35:
            (imp if has_imp else find).append("Findings are concerning for pneumonia.")
            _set(labels, ("Pneumonia",), POSITIVE)
        elif q < 0.6:
            (imp if has_imp else find).append("Pneumonia cannot be excluded.")
            _set(labels, ("Pneumonia",), UNCERTAIN)
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
            target.insert(int(rng.integers(len(target) + 1)), _phi_sentence(rng))

    sections: list[tuple[str, str]] = []
    openi = style == "openi"
    if placeholder is None:
        date = mark_phi(rng, "DATE")
        comparison = _pick(rng, (f"{date}.", "None.", f"Chest radiograph from {date}."))
        indication = _pick(rng, _INDICATIONS_RAW).format(age=_age(rng))
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
        protected = _MARKED.sub(lambda m: m.group(0).replace(" ", "\x04"), body)
        wrapped = textwrap.wrap(protected, width=76, break_long_words=False, break_on_hyphens=False)
        wrapped = [w.replace("\x04", " ") for w in wrapped]
        if header in ("FINDINGS", "IMPRESSION") and rng.random() < 0.6:
            lines += [f" {header}:", " "] + [f" {w}" for w in wrapped] + [" "]
        else:
            first, rest = (wrapped[0], wrapped[1:]) if wrapped else ("", [])
            lines += [f" {header}:  {first}"] + [f" {w}" for w in rest] + [" "]
    return "\n".join(lines).rstrip() + "\n"
