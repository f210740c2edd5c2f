"""Report sectioning and training text: headers, fallbacks, placeholders, empty reports."""

from __future__ import annotations

import pytest

from medtrain.data.errors import DataError
from medtrain.data.reports import (
    assemble_sections,
    clean_text,
    extract_sections,
    section_and_clean,
)

MIMIC = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___-year-old man with cough.

 COMPARISON:  ___

 FINDINGS:

 The lungs are clear.  No pleural effusion
 or pneumothorax.  Note: heart size normal.

 IMPRESSION:

 No acute cardiopulmonary process.  Dr. ___ was notified.
"""


def test_extract_sections_mimic_style():
    s = extract_sections(MIMIC)
    assert "preamble" not in s  # the FINAL REPORT banner is not text
    assert s["examination"] == "CHEST (PA AND LAT)"
    assert s["comparison"] == "___"
    assert s["findings"].startswith("The lungs are clear.") and "Note: heart" in s["findings"]
    assert s["impression"] == "No acute cardiopulmonary process.  Dr. ___ was notified."


def test_headers_case_insensitive_synonyms_and_midline():
    s = extract_sections("Findings: Lungs clear.\nImpressions:\n  Normal.\nConclusion: fine")
    assert s == {"findings": "Lungs clear.", "impression": "Normal. fine"}
    s = extract_sections("Heart normal. IMPRESSION: No acute disease.")
    assert s == {"preamble": "Heart normal.", "impression": "No acute disease."}
    assert "note" not in extract_sections("FINDINGS: x. Note: y")


def test_section_and_clean_joins_and_cleans():
    text = section_and_clean(MIMIC)
    assert text == (
        "The lungs are clear. No pleural effusion or pneumothorax. Note: heart size normal. "
        "No acute cardiopulmonary process. Dr. [PHI] was notified."
    )
    assert section_and_clean("FINDINGS: Normal chest XXXX.\nIMPRESSION: XXXX-year-old") == (
        "Normal chest [PHI]. [PHI]-year-old"
    )


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("INDICATION: cough\nIMPRESSION:  No acute process. ", "No acute process."),
        ("COMPARISON: none\nFINDINGS:\n Lungs clear.\n", "Lungs clear."),
        (
            "INDICATION: cough\n\nCOMPARISON: ___\n\nThe heart is normal.\n Lungs clear.",
            ("The heart is normal. Lungs clear."),
        ),
        ("FINDINGS:\n\nIMPRESSION:\n\nWET READ: lungs ok", "lungs ok"),
        ("Heart and lungs normal.", "Heart and lungs normal."),
    ],
    ids=["impression-only", "findings-only", "last-paragraph", "empty-sections", "no-headers"],
)
def test_section_and_clean_fallbacks(report, expected):
    assert section_and_clean(report) == expected


@pytest.mark.parametrize("report", ["", "   \n\t ", "FINDINGS:\n\nIMPRESSION:\n"])
def test_empty_report_raises(report):
    with pytest.raises(DataError, match="empty|no text"):
        section_and_clean(report)


def test_assemble_sections_round_trip():
    text = assemble_sections(
        [
            ("COMPARISON", "None."),
            ("INDICATION", ""),
            ("findings", " Clear. "),
            ("IMPRESSION", "ok"),
        ]
    )
    assert text == "COMPARISON: None.\nFINDINGS: Clear.\nIMPRESSION: ok"
    assert extract_sections(text) == {
        "comparison": "None.",
        "findings": "Clear.",
        "impression": "ok",
    }
    assert section_and_clean(text) == "Clear. ok"


WET_READ = """                                 WET READ: ___ ___ ___ 4:36 AM
  No acute process.
 ______________________________________________________________________________
                                 FINAL REPORT
 INDICATION:  ___M with cough.

 FINDINGS AND IMPRESSION:
 1.  Moderate right pleural effusion.
 2.  No pneumothorax.
"""


def test_final_report_banner_splits_off_wet_read():
    s = extract_sections(WET_READ)
    assert s["wet read"] == "___ ___ ___ 4:36 AM\n  No acute process."
    assert "preamble" not in s and s["indication"] == "___M with cough."
    assert section_and_clean(WET_READ) == "Moderate right pleural effusion. No pneumothorax."
    only_wet = "WET READ: lungs clear.\n____________\n FINAL REPORT\n"
    assert section_and_clean(only_wet) == "lungs clear."


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("FINDINGS AND IMPRESSION", "impression"),
        ("FINDINGS/IMPRESSION", "impression"),
        ("CONCLUSION", "impression"),
        ("conclusions", "impression"),
        ("impression", "impression"),
        ("IMPRESSON", "impression"),
        ("Findngs", "findings"),
        ("CLINICAL HISTORY", "history"),
        ("REASON FOR EXAM", "indication"),
        ("CHEST, TWO VIEWS", "findings"),
        ("PA AND LATERAL CHEST RADIOGRAPH", "findings"),
        ("Reason for examination", "indication"),
    ],
)
def test_header_names_follow_mimic_merges(header, name):
    s = extract_sections(f"EXAMINATION: chest\n{header}:  Lungs are clear.\n")
    assert s[name] == "Lungs are clear."


def test_lowercase_headers_and_unknown_lowercase_words():
    s = extract_sections("findings: lungs clear.\nimpression: normal.\nnote: called\n")
    assert s == {"findings": "lungs clear.", "impression": "normal.\nnote: called"}


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("1. Effusion.\n2. No pneumothorax.\n3) Lines in place.", "Effusion. No pneumothorax. "
         "Lines in place."),
        ("- Effusion.\n * Atelectasis.\n\u2022 Edema.", "Effusion. Atelectasis. Edema."),
        ("Stable. 2. Tip 4.5 cm above the carina.", "Stable. Tip 4.5 cm above the carina."),
        ("Measures 2.3 cm. Level T12-L1 - stable.", "Measures 2.3 cm. Level T12-L1 - stable."),
        ("Dr. ___ ___ at ___.", "Dr. [PHI] at [PHI]."),
        ("Normal chest XXXX. XXXX XXXX-year-old", "Normal chest [PHI]. [PHI]-year-old"),
        ("text\n ______________________________ \nmore", "text more"),
    ],
)  # fmt: skip
def test_clean_text_lists_placeholders_separators(raw, clean):
    assert clean_text(raw) == clean


def test_impression_only_report_and_findings_before_impression_order():
    assert section_and_clean("IMPRESSION: No acute disease.") == "No acute disease."
    text = "IMPRESSION: Normal.\nFINDINGS: Clear lungs."
    assert section_and_clean(text) == "Clear lungs. Normal."


# --- synthetic reports (medtrain.synth.reports): pneumonia wording, comparisons, agreement ----
def _render(seed: int, findings: list):
    import numpy as np

    from medtrain.synth.reports import render_report

    rep = render_report(np.random.default_rng(seed), findings)
    body = " ".join(b for h, b in rep.sections if h in ("FINDINGS", "IMPRESSION"))
    return body.lower(), rep.labels


def test_pneumonia_label_follows_the_drawn_pattern():
    import dataclasses

    from medtrain.synth.phantom import Finding

    seen = set()
    for seed in range(60):
        for hedged in (False, True):
            cons = Finding(kind="consolidation", side="right", zone="lower", hedged=hedged)
            text, labels = _render(seed, [dataclasses.replace(cons, pneumonia=True)])
            assert labels["Pneumonia"] == (-1.0 if hedged else 1.0), text
            assert "pneumonia" in text and "consolidation" in text
            assert labels["Consolidation"] == (-1.0 if hedged else 1.0)
            text, labels = _render(seed, [cons])  # no infectious pattern
            assert labels["Pneumonia"] in (None, 0.0), text
            assert (labels["Pneumonia"] == 0.0) == ("pneumonia" in text), text
            seen.add(labels["Pneumonia"])
    assert seen == {None, 0.0}  # both wordings occur


def test_comparison_phrases_and_determinism():
    from medtrain.synth.phantom import Finding

    eff = [Finding(kind="effusion", side="left", severity="moderate")]
    assert _render(3, eff) == _render(3, eff)
    texts = [_render(seed, eff)[0] for seed in range(80)]
    assert all("effusion" in t for t in texts)
    with_prior = [t for t in texts if "prior" in t or "no change" in t]
    assert 10 < len(with_prior) < 60  # sometimes, not always
    assert any("unchanged" in t for t in with_prior) and any("new " in t for t in with_prior)
    assert all(_render(seed, eff)[1]["Pleural Effusion"] == 1.0 for seed in range(80))


def test_random_findings_text_agrees_with_labels():
    import numpy as np

    from medtrain.synth.reports import FINDING_LABELS, FINDING_WORDS
    from medtrain.synth.study import sample_findings

    for seed in range(300):
        findings = sample_findings(np.random.default_rng([seed, 7]))
        text, labels = _render(seed, findings)
        for f in findings:
            assert any(w in text for w in FINDING_WORDS[f.kind]), (f, text)
            assert labels[FINDING_LABELS[f.kind][0]] in (1.0, -1.0)
        if labels["Pneumonia"] in (1.0, -1.0):
            assert any(f.kind == "consolidation" and f.pneumonia for f in findings), text
        if any(f.kind == "consolidation" and f.pneumonia for f in findings):
            assert labels["Pneumonia"] in (1.0, -1.0) and "pneumonia" in text
