"""Radiology report sectioning and the text used for training.

Headers are recognised at the start of a line (`FINDINGS:`, `Impression:`, ...): a known name in
any case, or any short ALL-CAPS name. A known ALL-CAPS header also counts mid-line after a full
stop ("... clear. IMPRESSION: ..."). Section names are returned lower case with synonyms merged
(`impressions`, `conclusion` -> `impression`); text before the first header is `preamble`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from medtrain.data.errors import DataError

KNOWN_HEADERS = frozenset(
    {
        "addendum",
        "clinical history",
        "clinical information",
        "comparison",
        "comparisons",
        "conclusion",
        "exam",
        "examination",
        "finding",
        "findings",
        "findings and impression",
        "history",
        "impression",
        "impressions",
        "indication",
        "notification",
        "procedure",
        "reason for exam",
        "reason for examination",
        "recommendation",
        "recommendations",
        "technique",
        "wet read",
    }
)
SYNONYMS = {
    "impressions": "impression",
    "conclusion": "impression",
    "finding": "findings",
    "exam": "examination",
    "comparisons": "comparison",
    "recommendations": "recommendation",
}
PHI_TOKEN = "[PHI]"
# Dataset placeholders for removed PHI: MIMIC writes "___", Open-I writes "XXXX".
_PLACEHOLDER = re.compile(r"_{2,}|X{4,}")
_HEADER = re.compile(
    r"(?:^[ \t]*|(?<=[.!?])[ \t]+)(?P<name>[A-Za-z][A-Za-z /&()-]{1,48}?)[ \t]*:",
    re.MULTILINE,
)
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def _headers(text: str) -> list[tuple[int, int, str]]:
    """(start of header, end of header incl. colon, normalized name) for each accepted header."""
    out = []
    for m in _HEADER.finditer(text):
        raw = m.group("name").strip()
        name = " ".join(raw.lower().split())
        line_begin = text.rfind("\n", 0, m.start("name")) + 1
        at_line = not text[line_begin : m.start("name")].strip()
        known = name in KNOWN_HEADERS
        if at_line:  # line start: a known name in any case, or a short ALL-CAPS name
            accept = known or (raw.isupper() and len(raw.split()) <= 4)
        else:  # after a full stop: only a known ALL-CAPS name
            accept = known and raw.isupper()
        if accept:
            out.append((m.start("name"), m.end(), SYNONYMS.get(name, name)))
    return out


def extract_sections(text: str) -> dict[str, str]:
    """Section name (lower case) -> stripped body. Repeated sections are joined with a space."""
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


def _without_headers(text: str) -> str:
    parts, pos = [], 0
    for start, end, _ in _headers(text):
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return " ".join(parts)


def clean_text(text: str) -> str:
    """Dataset PHI placeholders -> [PHI]; whitespace collapsed to single spaces."""
    return " ".join(_PLACEHOLDER.sub(PHI_TOKEN, text).split())


def training_text(text: str) -> str:
    """FINDINGS + IMPRESSION, else impression / findings / last paragraph / whole text; cleaned.

    Raises DataError for an empty report or one with nothing but section headers.
    """
    if not text or not text.strip():
        raise DataError("empty report: the report text is empty or whitespace only")
    sections = extract_sections(text)
    body = " ".join(s for s in (sections.get("findings"), sections.get("impression")) if s)
    if not body.strip():  # MIMIC's own fallback: the last paragraph
        paragraphs = [p for p in _PARAGRAPH.split(text.strip()) if p.strip()]
        body = _without_headers(paragraphs[-1]) if paragraphs else ""
    if not body.strip():
        body = _without_headers(text)
    body = clean_text(body)
    if not body:
        raise DataError("report has no text besides section headers")
    return body


def assemble_sections(sections: Iterable[tuple[str, str]]) -> str:
    """Raw report text from (LABEL, body) pairs, "LABEL: body" per line; empty bodies dropped.

    Used by the Open-I reader (and the synthetic writer for PHI offsets) so that
    `training_text` works the same on XML-sourced reports.
    """
    return "\n".join(f"{label.upper()}: {body.strip()}" for label, body in sections if body.strip())
