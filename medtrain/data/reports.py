"""Radiology report sectioning and cleaning of de-identified report text.

`section_and_clean` is the second half of the one text path (medtrain/data/text.py, its only
caller outside tests): it works on text that was already de-identified. Bump
SECTIONING_VERSION whenever a change here can change its output: it is part of the text-path
version recorded with shards and tokenizers.

Sectioning follows the MIMIC-CXR section parser's behaviour:
- A `FINAL REPORT` banner line splits off what comes before it (the preliminary wet read, kept
  as section `wet read`); `____` separator lines are dropped.
- Headers are recognised at the start of a line (`FINDINGS:`, `Impression:`, ...): a known name
  in any case (typos of the main names within difflib ratio 0.85 included), or any ALL-CAPS
  name of up to 6 words. A known ALL-CAPS header also counts mid-line after a full stop
  ("... clear. IMPRESSION: ..."). Text before the first header is `preamble`.
- Names are returned lower case with MIMIC's merges: `findings and impression`, `conclusion` ->
  `impression`; `clinical history` -> `history`; `reason for exam` -> `indication`; a name that
  contains a main section name maps to it; names describing the views (`CHEST, TWO VIEWS:`,
  `PA AND LATERAL:`, `PORTABLE AP:`) -> `findings`.
Section text = FINDINGS + IMPRESSION; else the last paragraph; else the whole final report;
else the wet read. Cleaning turns the data sets' PHI masks (`___`, `XXXX`) into one `[PHI]`,
drops list markers (`1.`, `2)`, `-`, `*`, `•`) and collapses whitespace.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from medtrain.data.errors import DataError

SYNONYMS = {
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "findings and impression": "impression",
    "impression and findings": "impression",
    "findings/impression": "impression",
    "finding": "findings",
    "exam": "examination",
    "type of examination": "examination",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "reference exam": "comparison",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "clinical indication": "indication",
    "recommendations": "recommendation",
    "recommendation(s)": "recommendation",
    "wetread": "wet read",
}
CANONICAL = frozenset(
    {
        "addendum",
        "comparison",
        "examination",
        "findings",
        "history",
        "impression",
        "indication",
        "notification",
        "procedure",
        "recommendation",
        "technique",
        "wet read",
    }
)
KNOWN_HEADERS = frozenset(SYNONYMS) | CANONICAL
MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
PHI_TOKEN = "[PHI]"
SECTIONING_VERSION = "1"  # bump when sectioning or cleaning can give different text

_VIEW_HEADER = re.compile(
    r"\bchest\b|portable|\b(?:pa|ap)\b.*\blat|two views|frontal|\b(?:pa|ap|one|lateral) view"
)
# Data set placeholders for removed PHI: MIMIC writes "___", Open-I "XXXX". Runs of 10 or more
# underscores are separator lines, not placeholders.
_PLACEHOLDER = re.compile(r"(?<!_)_{2,9}(?!_)|X{4,}")
_PHI_RUN = re.compile(r"\[PHI\](?:\s+\[PHI\])+")
_SEPARATOR = re.compile(r"^[ \t]*_{10,}[ \t]*$", re.MULTILINE)
_BANNER = re.compile(r"^[ \t]*FINAL REPORT[ \t]*$", re.MULTILINE)
_LIST_AT_LINE = re.compile(r"^[ \t]*(?:\d{1,2}[.)]|[-*\u2022])[ \t]+", re.MULTILINE)
_LIST_AFTER_SENTENCE = re.compile(r"(?<=[.!?;:])[ \t]+\d{1,2}[.)][ \t]+(?=[A-Z])")
_HEADER = re.compile(
    r"(?:^[ \t]*|(?<=[.!?])[ \t]+)(?P<name>[A-Za-z][A-Za-z /&(),-]{1,60}?)[ \t]*:",
    re.MULTILINE,
)
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def normalize_header(raw: str) -> tuple[str, bool]:
    """(normalized section name, whether it is a known header) for a header's raw text."""
    name = " ".join(raw.lower().split())
    if name in KNOWN_HEADERS:
        return SYNONYMS.get(name, name), True
    for main in MAIN_SECTIONS:
        if main in name:
            return main, True
    close = difflib.get_close_matches(name, MAIN_SECTIONS, n=1, cutoff=0.85)
    if close:
        return close[0], True
    if _VIEW_HEADER.search(name):
        return "findings", False
    return name, False


def _headers(text: str) -> list[tuple[int, int, str]]:
    """(start of header, end of header incl. colon, normalized name) for each accepted header."""
    out = []
    for m in _HEADER.finditer(text):
        raw = m.group("name").strip()
        name, known = normalize_header(raw)
        line_begin = text.rfind("\n", 0, m.start("name")) + 1
        at_line = not text[line_begin : m.start("name")].strip()
        if at_line:  # line start: a known name in any case, or a short ALL-CAPS name
            accept = known or (raw.isupper() and len(raw.split()) <= 6)
        else:  # after a full stop: only a known ALL-CAPS name
            accept = known and raw.isupper()
        if accept:
            out.append((m.start("name"), m.end(), name))
    return out


def split_final_report(text: str) -> tuple[str, str]:
    """(wet read part, final report part): the text before / after a FINAL REPORT banner."""
    text = _SEPARATOR.sub("", text)
    m = _BANNER.search(text)
    return (text[: m.start()], text[m.end() :]) if m else ("", text)


def _sections(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    heads = _headers(text)
    pre = text[: heads[0][0]] if heads else text
    if pre.strip():
        sections["preamble"] = pre.strip()
    for i, (_, end, name) in enumerate(heads):
        stop = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        body = text[end:stop].strip()
        if name in sections and body:
            sections[name] = f"{sections[name]} {body}".strip()
        elif name not in sections:
            sections[name] = body
    return sections


def extract_sections(text: str) -> dict[str, str]:
    """Section name (lower case) -> stripped body. Repeated sections are joined with a space."""
    wet, final = split_final_report(text)
    sections: dict[str, str] = {}
    if wet.strip():
        sections["wet read"] = " ".join(b for b in _sections(wet).values() if b)
    for name, body in _sections(final).items():
        if name in sections and body:
            sections[name] = f"{sections[name]} {body}"
        elif name not in sections or not sections[name]:
            sections[name] = body
    return sections


def _without_headers(text: str) -> str:
    parts, pos = [], 0
    for start, end, _ in _headers(text):
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return " ".join(parts)


def clean_text(text: str) -> str:
    """PHI masks -> one [PHI]; list markers dropped; whitespace collapsed to single spaces."""
    text = _SEPARATOR.sub(" ", text)
    text = _LIST_AT_LINE.sub("", text)
    text = _LIST_AFTER_SENTENCE.sub(" ", text)
    text = " ".join(_PLACEHOLDER.sub(PHI_TOKEN, text).split())
    return _PHI_RUN.sub(PHI_TOKEN, text)


def section_and_clean(text: str) -> str:
    """FINDINGS + IMPRESSION, else last paragraph / whole final report / wet read; cleaned.

    `text` is report text that was already de-identified: call `medtrain.data.text.record_text`
    for training text, never this on a raw report.

    Raises DataError for an empty report or one with nothing but section headers.
    """
    if not text or not text.strip():
        raise DataError("empty report: the report text is empty or whitespace only")
    sections = extract_sections(text)
    body = " ".join(s for s in (sections.get("findings"), sections.get("impression")) if s)
    wet, final = split_final_report(text)
    if not body.strip():  # MIMIC's own fallback: the last paragraph
        paragraphs = [p for p in _PARAGRAPH.split(final.strip()) if p.strip()]
        body = _without_headers(paragraphs[-1]) if paragraphs else ""
    if not body.strip():
        body = _without_headers(final)
    if not body.strip():
        body = sections.get("wet read", "")
    body = clean_text(body)
    if not body:
        raise DataError("report has no text besides section headers")
    return body


def assemble_sections(sections: Iterable[tuple[str, str]]) -> str:
    """Raw report text from (LABEL, body) pairs, "LABEL: body" per line; empty bodies dropped.

    Used by the Open-I reader (and the synthetic writer for PHI offsets) so that
    `section_and_clean` works the same on XML-sourced reports.
    """
    return "\n".join(f"{label.upper()}: {body.strip()}" for label, body in sections if body.strip())
