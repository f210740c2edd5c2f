"""Synthetic text without images: PHI-labelled reports and a general-English baseline corpus.

- `labelled_reports(n, seed)`: raw reports in three styles, one after the other: MIMIC (masks
  `___`, residual PHI), Open-I (masks `XXXX`, assembled sections), hospital (no masks: real
  looking names, dates, ages). Each comes with its ground-truth PHI spans; used to measure
  de-identification.
- `general_text(n, seed)`: procedurally generated everyday English sentences (no clinical
  vocabulary), the corpus of the general-purpose baseline vocabulary in fertility comparisons.
Both are pure functions of (n, seed).
"""

from __future__ import annotations

import re

import numpy as np

from medtrain.data.reports import assemble_sections
from medtrain.synth.phi import strip_phi_markers
from medtrain.synth.reports import mimic_text, render_report
from medtrain.synth.study import sample_findings

STYLES = ("mimic", "openi", "hospital")
Spans = list[tuple[int, int, str]]


def labelled_reports(
    n: int, seed: int = 0, *, phi_fraction: float = 0.5
) -> list[tuple[str, Spans, str]]:
    """(raw report text, PHI spans [(start, end, kind)], style) for n reports."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2, i]))
        style = STYLES[i % len(STYLES)]
        findings = sample_findings(rng)
        phi = bool(rng.random() < phi_fraction)
        if style == "openi":
            report = render_report(rng, findings, placeholder="XXXX", phi=phi, style="openi")
            marked = assemble_sections(report.sections)
        else:
            placeholder = "___" if style == "mimic" else None
            report = render_report(rng, findings, placeholder=placeholder, phi=phi)
            marked = mimic_text(rng, report.sections)
        text, spans = strip_phi_markers(marked)
        out.append((text, spans, style))
    return out


_SUBJECTS = (
    "the children", "my neighbour", "a young farmer", "the old teacher", "our family",
    "the small dog", "a tired traveller", "the baker", "her brother", "the committee",
    "a group of students", "the village council", "his grandmother", "the new manager",
    "a curious cat", "the musicians", "the gardener", "two friends", "the shopkeeper",
    "the football team", "a famous writer", "the fishermen", "my aunt", "the carpenter",
    "an elderly couple", "the local newspaper", "a street painter", "the tourists",
    "our teacher", "the mayor", "the firefighters", "a clever student", "the librarian",
    "my cousin", "the engineers", "a retired pilot", "the volunteers", "the orchestra",
)  # fmt: skip
_VERBS = (
    "walked to", "talked about", "looked at", "cleaned", "painted", "visited", "bought",
    "repaired", "carried", "discovered", "remembered", "described", "ordered", "borrowed",
    "watched", "organised", "celebrated", "photographed", "opened", "followed", "built",
    "decorated", "explored", "sold", "designed", "measured", "delivered", "planted",
    "searched for", "argued about", "laughed at", "waited near", "climbed", "crossed",
    "returned to", "wrote about", "dreamed about", "complained about", "danced around",
    "cooked near", "sang about", "recommended", "admired", "forgot", "noticed", "rebuilt",
)  # fmt: skip
_ADJECTIVES = (
    "bright", "quiet", "crowded", "wooden", "famous", "little", "beautiful", "noisy", "cheap",
    "ancient", "colourful", "empty", "friendly", "modern", "strange", "comfortable", "sunny",
    "enormous", "delicious", "expensive", "narrow", "peaceful", "busy", "ordinary", "golden",
    "rusty", "elegant", "popular", "secret", "muddy", "tiny", "brilliant", "lonely", "fancy",
    "historic", "wonderful", "simple", "windy", "frozen", "charming", "traditional", "valuable",
)  # fmt: skip
_OBJECTS = (
    "market", "garden", "kitchen", "bicycle", "library", "river", "bridge", "museum", "window",
    "festival", "newspaper", "mountain", "restaurant", "station", "letter", "blanket",
    "playground", "harbour", "orchestra", "bakery", "castle", "umbrella", "holiday", "recipe",
    "cathedral", "lighthouse", "cottage", "sandwich", "computer", "theatre", "village",
    "telescope", "painting", "motorcycle", "farmhouse", "notebook", "stadium", "sculpture",
    "airport", "vineyard", "fountain", "workshop", "football", "photograph", "wardrobe",
    "concert", "adventure", "journey", "parliament", "university", "neighbourhood", "chocolate",
)  # fmt: skip
_TIMES = (
    "on Saturday morning", "after lunch", "during the summer", "last week", "before dinner",
    "in the evening", "every weekend", "at sunrise", "in the spring", "yesterday afternoon",
    "during the holidays", "late at night", "in the autumn", "after the storm", "last year",
)  # fmt: skip
_CLAUSES = (
    "because it was raining", "while the band was playing", "although nobody expected it",
    "and everyone laughed", "so the neighbours came to help", "and then went home for tea",
    "before the shops closed", "as the sun went down", "and wrote a long letter about it",
    "even though the weather was terrible", "since the trains were delayed",
    "until the children fell asleep", "whenever the opportunity appeared",
    "because the price was surprisingly reasonable", "and told the whole story afterwards",
)  # fmt: skip


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def general_text(n: int, seed: int = 0) -> list[str]:
    """n short documents (2-4 sentences) of everyday English."""
    rng = np.random.default_rng([seed, 7])
    docs = []
    for _ in range(n):
        sentences = []
        for _ in range(int(rng.integers(2, 5))):
            s = f"{_pick(rng, _SUBJECTS)} {_pick(rng, _VERBS)} the {_pick(rng, _ADJECTIVES)} "
            s += f"{_pick(rng, _OBJECTS)} {_pick(rng, _TIMES)}"
            if rng.random() < 0.5:
                s += f" {_pick(rng, _CLAUSES)}"
            sentences.append(s[0].upper() + s[1:] + ".")
        docs.append(" ".join(sentences))
    return docs


# Hand-written report lines, NOT produced by the templates the de-identifier was tuned on:
# {KIND|text} marks PHI. Half carry PHI in forms the templates never use; half are clinical
# text full of eponyms, levels, measurements and capitalized words that must stay.
HANDWRITTEN = (
    "Critical result called to {NAME|Dr. Alvarez-Whitfield} (ED attending) at {TIME|3:42 PM}.",
    "Discussed with PA {NAME|Jenna Morrow} at {TIME|14:05} on {DATE|2/3/2021}.",
    "Case reviewed with {NAME|Dr Kowalczyk} before dictation.",
    "Exam date: {DATE|2019-11-02} {TIME|08:15}.",
    "Reported by: {NAME|Samuel T. Greene}, M.D.",
    "Questions: {PHONE|(212) 555-0199 x204}.",
    "Patient is a {AGE|97} yo female with fever.",
    "Acc: {ID|CR-22-004512}. MRN#: {ID|00458812}.",
    "Outside images from {HOSPITAL|Good Samaritan Hospital} were reviewed.",
    "Discussed with the patient's daughter, {NAME|Maria}, by phone.",
    "Please forward to {EMAIL|j.okonkwo@valleyhealth.net}.",
    "Preliminary read by resident {NAME|Tomasz Wierzbicki}; agree with final.",
    "Paged {NAME|Dr. Featherstonehaugh} at {TIME|2315} regarding the pneumothorax.",
    "Compared with outside study dated {DATE|Sept 4, 2018}.",
    "Patient lives at {ADDRESS|88 Juniper Lane, Westfield, NJ 07090}.",
    "Per {NAME|Dr. Oyelowo}, the line was pulled back on {DATE|12/9}.",
    "Swan-Ganz catheter tip projects over the right pulmonary artery.",
    "Kerley B lines and peribronchial cuffing suggest interstitial edema.",
    "Dobhoff tube terminates in the stomach; Port-A-Cath via the left subclavian vein.",
    "T7 compression deformity is unchanged; C5-C6 ACDF hardware is intact.",
    "A 2.3 x 1.5 cm nodule in the right upper lobe; follow up per Fleischner 2017 guidelines.",
    "ETT 4.5 cm above the carina. NG tube coiled in the stomach.",
    "PA and lateral views; AP portable upright view for comparison.",
    "Findings suggest Pancoast tumor; no Hampton hump or Westermark sign.",
    "Morgagni hernia versus Bochdalek hernia; Golden S sign is absent.",
    "History of Williams syndrome and Graves disease; status post Nissen fundoplication.",
    "Postoperative changes of Ivor Lewis esophagectomy. Harrington rods in place.",
    "Findings communicated to the ordering provider via secure chat.",
    "Discussed with the ICU team at the bedside.",
    "No change since 2019. Follow-up CT in 3-6 months. Ribs 4-6 on the right are intact.",
    "Heart rate 95 bpm on the ECG strip. SpO2 92% on room air.",
    "Lung-RADS 2. Mild cardiomegaly, CTR 0.55. Lateral view at 90 degrees.",
    "The right costophrenic angle is blunted; left basilar atelectasis at T10-T11.",
    "Marfan habitus with pectus excavatum. Mach band along the left heart border.",
)
# Written after the rules were frozen and never used to tune them: a small held-out check.
HELDOUT = (
    "Verbal report given to {NAME|Dr. Ngata} at {TIME|1705h} by the undersigned.",
    "Read in conjunction with {NAME|Dr. Ruth Abramowicz}, thoracic fellow.",
    "Pt: {NAME|BJORNSSON, EIRIKUR}; DOB: {DATE|03/22/1928}.",
    "Tel. {PHONE|0207 946 0958} (radiology front desk).",
    "Report faxed to {PHONE|617 555 0142} on {DATE|Nov. 3}.",
    "Chest x-ray performed {DATE|14/07/2022} at {HOSPITAL|Kingsbridge Infirmary}.",
    "{NAME|Ms Delacroix-Moreau} was informed of the result.",
    "Patient age: {AGE|102}.",
    "Correlate with CT from {DATE|Jan 2nd}.",
    "See PACS accession {ID|77341902} for prior images.",
    "Contact the reading room at ext {PHONE|5521}.",
    "Dictated: {NAME|K. Oduya}, MD, {DATE|10/10/2023} {TIME|09:41}",
    "Seen in clinic by Nurse Practitioner {NAME|Hollis Grange} on {DATE|5 March}.",
    "Study ID: {ID|STX-000912-A}",
    "Family (son, {NAME|Derek}) at bedside.",
    "Discussed findings with {NAME|Dr. Iqbal} and {NAME|Dr. Haverford-Lowe} at {TIME|11:20}.",
    "The Swan-Ganz catheter has been removed; a left IJ sheath remains.",
    "Bilateral Kerley A lines; Lung-RADS category 4A.",
    "Sternotomy wires intact; CABG clips; Starr-Edwards valve.",
    "Compared to prior from 2 years ago, the 1.1 cm RUL nodule is stable.",
    "Impression: Findings consistent with Crohn disease related lymphadenopathy.",
    "Cardiothoracic ratio 0.6; aortic knob 4.2 cm; AP diameter increased.",
    "Reviewed by the thoracic team; no further action.",
    "Bochdalek hernia; Chilaiditi sign; Hampton hump absent.",
)
_MARKUP = re.compile(r"\{([A-Z]+)\|([^}]*)\}")


def handwritten_reports(lines: tuple[str, ...] = HANDWRITTEN) -> list[tuple[str, Spans]]:
    """Marked-up lines (HANDWRITTEN or HELDOUT) as (text, PHI spans)."""
    out = []
    for line in lines:
        text, spans, pos = [], [], 0
        length = 0
        for m in _MARKUP.finditer(line):
            text.append(line[pos : m.start()])
            length += m.start() - pos
            spans.append((length, length + len(m.group(2)), m.group(1)))
            text.append(m.group(2))
            length += len(m.group(2))
            pos = m.end()
        text.append(line[pos:])
        out.append(("".join(text), spans))
    return out
