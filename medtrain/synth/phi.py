"""Injected PHI: fake identifier values, the sentences that carry them, and their markers.

While a report is built, every injected PHI value is wrapped as START kind SEP value END
(control characters no report contains); `strip_phi_markers` removes the markers and returns the
ground-truth spans [(start, end, kind)] into the clean text. Kinds are those of the
de-identifier's ground truth (NAME, DATE, TIME, AGE, MRN, ACCESSION, ID, PHONE, EMAIL, URL,
ADDRESS, HOSPITAL); sentence slots SSN and PAGER are written as ID and PHONE.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

PHI_START, PHI_SEP, PHI_END = "\x02", "\x1f", "\x03"
# One marked value: group 1 the kind, group 2 the value.
MARKED = re.compile("\x02([A-Z]+)\x1f(.*?)\x03", re.DOTALL)
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


def phi_sentence(rng: np.random.Generator) -> str:
    """A sentence with PHI values wrapped in markers."""
    template = _pick(rng, _PHI_SENTENCES)
    out = template
    for slot in re.findall(r"\{([A-Z]+)\}", template):
        out = out.replace("{" + slot + "}", mark_phi(rng, slot), 1)
    return out.replace("." + PHI_END + ".", "." + PHI_END)  # "at 9:15 a.m.." -> "a.m."


def marked_age(rng: np.random.Generator) -> str:
    """A patient age 20..104 as written; ages over 89 are PHI and come marked."""
    age = int(rng.integers(20, 105))
    return f"{PHI_START}AGE{PHI_SEP}{age}{PHI_END}" if age > 89 else str(age)


def strip_phi_markers(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Remove PHI markers; return the clean text and [(start, end, kind), ...] into it."""
    out, spans, pos = [], [], 0
    length = 0
    for m in MARKED.finditer(text):
        out.append(text[pos : m.start()])
        length += m.start() - pos
        value = m.group(2)
        spans.append((length, length + len(value), m.group(1)))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), spans
