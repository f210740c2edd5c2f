"""De-identification: every PHI kind, clinical text untouched, scores on labelled reports, audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtrain.data.config import DeidConfig
from medtrain.data.deid import (
    Gate,
    PhiScore,
    _gates,
    audit,
    deidentify,
    deidentify_batch,
    find_phi,
    format_audit,
    name_words,
)
from medtrain.data.records import Record
from medtrain.data.text import record_text
from medtrain.synth.text import handwritten_reports, labelled_reports

# (text, the PHI substrings that must be scrubbed, kind of the first one)
POSITIVE = [
    ("Discussed with Dr. Smith at the bedside.", ["Dr. Smith"], "NAME"),
    ("Called to dr. o'brien by phone.", ["dr. o'brien"], "NAME"),
    ("Findings were communicated to John A. Doe.", ["John A. Doe"], "NAME"),
    ("Patient: SMITH, JOHN. Seen today.", ["SMITH, JOHN"], "NAME"),
    ("Report for Zebulon Quackenbush, MRN 1234567.", ["Zebulon Quackenbush", "1234567"], "NAME"),
    ("Dictated by Priya Lindqvist on 3/4/2019.", ["Priya Lindqvist", "3/4/2019"], "NAME"),
    ("Eamon Thorsdottir was notified of the result.", ["Eamon Thorsdottir"], "NAME"),
    ("Read by resident Tomasz Wierzbicki.", ["Tomasz Wierzbicki"], "NAME"),
    ("Compared with the study of 2019-03-04.", ["2019-03-04"], "DATE"),
    ("Prior exam on March 3rd, 2019 and 03-JAN-2020.", ["March 3rd, 2019", "03-JAN-2020"], "DATE"),
    ("Seen 4 Mar 2018, again in June 2019.", ["4 Mar 2018", "June 2019"], "DATE"),
    ("Comparison: 12/13. Follow-up dated 1/2.", ["12/13", "1/2"], "DATE"),
    ("Called at 9:15 a.m. and again at 2130 hours.", ["9:15 a.m.", "2130 hours"], "TIME"),
    ("Paged at 11pm; read at 14:05:30.", ["11pm", "14:05:30"], "TIME"),
    ("A 92-year-old woman; history: 95F; age 101.", ["92", "95", "101"], "AGE"),
    ("MR# 7654321, ACC# RAD-2019-012345, SSN 123-45-6789.", ["7654321", "RAD-2019-012345"], "ID"),
    ("Accession number A12345678.", ["A12345678"], "ID"),
    ("Call (617) 555-0123 or fax 617.555.0199 ext. 42.", ["(617) 555-0123"], "PHONE"),
    ("Page at pager 12345 or extension 4567.", ["12345", "4567"], "PHONE"),
    ("Mail j.doe@mercyhealth.org with questions.", ["j.doe@mercyhealth.org"], "EMAIL"),
    ("See https://pacs.example.org/viewer?study=12 or www.lakesidemed.com/r.", [
        "https://pacs.example.org/viewer?study=12", "www.lakesidemed.com/r"], "URL"),
    ("Lives at 123 Main Street, Boston, MA 02115.", ["123 Main Street, Boston, MA 02115"],
     "ADDRESS"),
    ("Outside films from St. Mary's Medical Center.", ["St. Mary's Medical Center"], "HOSPITAL"),
    ("Transferred from Brigham and Women's Hospital.", ["Brigham and Women's Hospital"],
     "HOSPITAL"),
]  # fmt: skip

CLINICAL = [
    "No Kerley B lines. PA and lateral views of the chest were obtained.",
    "Swan-Ganz catheter tip in the right pulmonary artery; Dobhoff tube in the stomach.",
    "A 2.3 cm nodule in the right upper lobe; follow up per Fleischner Society guidelines.",
    "Degenerative changes at T11-T12. Osseous structures from C7 through L1 are intact.",
    "ETT 4.5 cm above the carina. The right hemidiaphragm is elevated by 2.5 cm.",
    "History of Williams syndrome, Graves disease and Hodgkin lymphoma.",
    "No Hampton hump or Westermark sign. Morgagni hernia. Ivor Lewis esophagectomy.",
    "67-year-old man with cough. Follow-up in 6-8 weeks. No change since 2019.",
    "Findings were discussed with the referring physician. Reviewed by the ICU team.",
    "Findings discussed with Dr. ___ at ___. Normal chest XXXX. Dr. [PHI] was notified.",
    "Heart rate 95 bpm; SpO2 92% on room air; lateral view at 90 degrees.",
    "IMPRESSION: 1. Moderate right pleural effusion. 2. Left lower lobe atelectasis.",
]


@pytest.mark.parametrize(("text", "phi", "kind"), POSITIVE, ids=lambda x: str(x)[:30])
def test_each_phi_kind_is_scrubbed(text, phi, kind):
    result = deidentify(text)
    for value in phi:
        assert value not in result.text, (value, result.text)
    spans = {text[s:e]: k for s, e, k in result.spans}
    assert any(phi[0] in v and k == kind for v, k in spans.items()), spans
    assert "[PHI]" in result.text


@pytest.mark.parametrize("text", CLINICAL, ids=lambda x: x[:30])
def test_clinical_text_is_untouched(text):
    result = deidentify(text)
    assert result.text == text and result.spans == [], [text[s:e] for s, e, _ in result.spans]


def test_spans_refer_to_original_and_merge():
    text = "Discussed with Dr. John Smith at 9:15 AM on 03/14/2019, MRN 1234567."
    result = deidentify(text)
    assert result.text == "Discussed with [PHI] at [PHI] on [PHI], MRN [PHI]."
    assert [text[s:e] for s, e, _ in result.spans] == [
        "Dr. John Smith",
        "9:15 AM",
        "03/14/2019",
        "1234567",
    ]
    assert [k for *_, k in result.spans] == ["NAME", "TIME", "DATE", "ID"]
    adjacent = find_phi("Dr. Smith 03/14/2019 12:30")  # touching spans stay separate kinds
    assert len(adjacent) == 3
    assert deidentify(result.text).text == result.text  # idempotent: [PHI] is never PHI


def test_config_kinds():
    text = "Call Dr. Smith at (617) 555-0123."
    only_phone = deidentify(text, DeidConfig(kinds=("PHONE",)))
    assert only_phone.text == "Call Dr. Smith at [PHI]."
    assert deidentify(text, DeidConfig(kinds=("NAME",))).text == "Call [PHI] at (617) 555-0123."
    with pytest.raises(ValueError, match="NAMES"):
        DeidConfig(kinds=("NAMES",))


def test_gates_name_the_facts_they_test():
    def gates(text):
        return _gates(text, set(text.replace(",", " ").split()))

    assert gates("no digits here") == set()
    assert gates("at 9:15") == {Gate.DIGITS_1_2, Gate.CLOCK}
    assert gates("MRN 1234567") == {Gate.DIGITS_3_PLUS, Gate.DIGITS_6_PLUS}
    assert gates("pager 12345") == {Gate.DIGITS_3_PLUS, Gate.DIGITS_5, Gate.DIGITS_4_5}
    assert Gate.NUMERIC_DATE in gates("seen 3/14") and Gate.AGE_OVER_89 in gates("a 92 yo")
    assert gates("on March 3, 123 Main Street, a@b.org, www.x.org") >= {
        Gate.MONTH_NAME,
        Gate.STREET,
        Gate.AT_SIGN,
        Gate.URL_PREFIX,
    }
    assert gates("read at 2130 hours") == {Gate.DIGITS_3_PLUS, Gate.DIGITS_4, Gate.DIGITS_4_5}
    assert deidentify("read at 2130 hours").text == "read at [PHI]"  # its rule ran


def test_batch_matches_single_and_text_path():
    texts = [t for t, *_ in POSITIVE[:6]] + CLINICAL[:3]
    single = [deidentify(t) for t in texts]
    assert deidentify_batch(texts) == single
    assert deidentify_batch(texts, workers=2, chunksize=2) == single
    raw = "FINDINGS: Lungs clear.\nIMPRESSION: Discussed with Dr. Smith at 10:15."
    rec = Record(id="r1", image_path=Path("r1.png"), report=raw)
    assert record_text(rec, DeidConfig()) == "Lungs clear. Discussed with [PHI] at [PHI]."


def test_name_words_and_audit():
    text = "Discussed with Dr. John Smith and SMITH, MARY at 10:00."
    assert name_words(text, find_phi(text)) == {"john", "smith", "mary"}
    rep = audit([("r1", text), ("r2", CLINICAL[0])], examples=1, context=10)
    assert rep.reports == 2 and rep.reports_with_phi == 1
    assert rep.counts["NAME"] == 2 and rep.counts["TIME"] == 1
    assert rep.examples["NAME"] == [("r1", "ssed with <<Dr. John Smith>> and SMITH")]
    lines = list(format_audit(rep))
    assert lines[0] == "2 reports, 1 with PHI to scrub" and any("NAME" in x for x in lines)


def test_recall_and_precision_on_labelled_reports():
    score = PhiScore()
    for text, truth, _ in labelled_reports(300, seed=11):
        score.add(text, find_phi(text), truth)
    assert score.phi_tokens > 1000
    assert score.recall >= 0.99 and score.precision >= 0.9, (score.recall, score.precision)
    assert {"NAME", "DATE", "TIME", "AGE", "PHONE", "ADDRESS", "HOSPITAL"} <= set(score.by_kind)
    hand = PhiScore()
    for text, truth in handwritten_reports():
        hand.add(text, find_phi(text), truth)
    assert hand.recall >= 0.99 and hand.precision >= 0.9


def test_score_counts_partial_scrub_as_miss():
    score = PhiScore()
    text = "Call 617-555-0123 now"
    score.add(text, [(5, 12, "PHONE")], [(5, 17, "PHONE")])  # "617-555" of "617-555-0123"
    assert (score.phi_tokens, score.recalled, score.scrubbed) == (3, 2, 2)
    assert score.precision == 1.0 and score.recall == pytest.approx(2 / 3)
