"""Report sectioning and training text: headers, fallbacks, placeholders, empty reports."""

from __future__ import annotations

import pytest

from medtrain.data.errors import DataError
from medtrain.data.reports import assemble_sections, extract_sections, training_text

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
    assert s["preamble"] == "FINAL REPORT"
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


def test_training_text_joins_and_cleans():
    text = training_text(MIMIC)
    assert text == (
        "The lungs are clear. No pleural effusion or pneumothorax. Note: heart size normal. "
        "No acute cardiopulmonary process. Dr. [PHI] was notified."
    )
    assert training_text("FINDINGS: Normal chest XXXX.\nIMPRESSION: XXXX-year-old") == (
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
def test_training_text_fallbacks(report, expected):
    assert training_text(report) == expected


@pytest.mark.parametrize("report", ["", "   \n\t ", "FINDINGS:\n\nIMPRESSION:\n"])
def test_empty_report_raises(report):
    with pytest.raises(DataError, match="empty|no text"):
        training_text(report)


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
    assert training_text(text) == "Clear. ok"
