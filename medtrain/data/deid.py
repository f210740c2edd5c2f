"""Rule-based, offline de-identification of residual PHI in report text, and its audit.

`deidentify(text)` finds PHI spans and replaces each (merged) span with `[PHI]`. Kinds:
NAME, DATE, TIME, AGE (over 89 only), ID (MRN, accession, SSN, order and other numbers),
PHONE (with fax, pager, extension), EMAIL, URL, ADDRESS, HOSPITAL.

How names are found (everything else is one compiled regex per pattern family):
- after a title (Dr., Doctor, Mr., Mrs., Ms., Prof.): "Dr. Smith", "Dr. J. A. Smith", "dr. smith";
- after a cue: "discussed with", "called to", "communicated to", "by", "contact", "page",
  "Patient:", "Attending:", ...; before one: "... was notified", "..., MD";
- from small gazetteers (names.py-free: FIRST_NAMES, LAST_NAMES below): "John A. Doe";
- "SMITH, JOHN [A]" after a cue, or with a gazetteer name in either position.
Name tokens are capitalized words, initials and one "Last, First" comma; clinical words,
abbreviations and eponyms (NOT_NAMES: Kerley, Swan-Ganz, Fleischner, PA, CT, ...) stop a name.
Years alone, ages up to 89, measurements ("2.3 cm"), vertebral levels ("T12") and lobes are
not PHI and are left alone. Measured on synthetic reports: benchmarks/data/bench_deid.py.

This is the `rules` backend of the one text path (medtrain/data/text.py), which is the only
caller on report text outside this module's own audit. Bump RULES_VERSION whenever a change
here can change what is scrubbed: it is part of the text-path version recorded with shards
and tokenizers.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context

from medtrain.data.config import PHI_KINDS, DeidConfig
from medtrain.data.reports import PHI_TOKEN

RULES_VERSION = "1"  # bump when the rules, gazetteers or gates change what is scrubbed
KINDS = PHI_KINDS
Span = tuple[int, int, str]


# --- gazetteers (lower case) -------------------------------------------------------------------
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FIRST_NAMES = _words(
    """
    aaron abdul abigail adam adrian ahmed aisha alan albert alejandro alex alexander alexandra
    alice alicia amanda amir amy ana andrea andrew angela anita ann anna anne anthony antonio
    arjun arthur ashley barbara benjamin betty beverly brandon brenda brian bruce carl carlos
    carmen carol caroline catherine charles charlotte cheryl chinedu christina christine
    christopher cynthia daniel david deborah debra denise dennis diana diane dmitri donald donna
    dorothy douglas edward elena elizabeth emily emma eric ethan eugene evelyn fatima fernando
    frances francisco gabriel gary george gerald gloria gregory hannah harold heather helen
    henry hiroshi ibrahim ingrid irene isabel jacob james janet janice jason javier jean
    jeffrey jennifer jeremy jerry jessica joan joe john jonathan jorge jose joseph joshua
    juan judith julia julie justin karen katherine kathleen kathryn keith kelly kenneth kevin
    kimberly kwame larry laura lauren lawrence linda lisa lucia luis madison margaret maria
    marie marilyn martha martin mary mateo matthew megan melissa michael michelle mohammed
    muhammad nancy natalie nathan ngozi nicholas nicole noah olga olivia pamela patricia
    patrick paul peter philip priya rachel rahul raj ralph rebecca richard robert roger ronald
    roy russell ruth ryan samantha samuel sandra sara sarah scott sean sharon shirley siobhan
    sophia stephanie stephen steven susan sven tariq teresa theresa thomas timothy tyler
    victoria vincent virginia walter wayne wei william yuki zachary
    """
)
LAST_NAMES = _words(
    """
    abbott adams adeyemi ahmed alexander ali allen alvarez anderson bailey baker barnes bennett
    brooks bryant butler campbell carter castillo chen cohen coleman collins cook cooper
    cruz davis delacroix diaz doe edwards evans fernandes fernandez fisher fitzgerald flores
    foster garcia gibson gomez gonzalez gordon graham griffin gupta haddad hamilton harris
    hayes henderson hernandez howard hughes ivanova jackson james jenkins jimenez johnson
    jones kaur kelly kennedy khan kim kowalski kumar lee lindqvist lopez martin martinez mcallister
    mendoza meyer miller mitchell moore morales morgan morris murphy murray myers nakamura
    nelson nguyen obrien okafor oliver ortiz owens papadopoulos patel perez perry petrov
    peterson phillips powell ramirez reyes richardson rivera roberts robinson rodriguez rogers
    romero rossi ruiz russell sanchez sanders schmidt scott shah simmons singh smith stewart
    sullivan taylor thomas thompson torres tran turner walker ward washington watson williams
    wilson wojcik wright yamamoto yang zhang
    """
)
TITLES = frozenset({"dr", "doctor", "mr", "mrs", "ms", "miss", "prof", "professor"})
_ABBREVIATED_TITLES = frozenset({"dr", "mr", "mrs", "ms", "prof"})
# Capitalized words that end (or never start) a name: report words, roles and departments,
# abbreviations, eponyms, months and days.
NOT_NAMES = _words(
    """
    a an and at by for from in of on or the to with was were is are has had who which that this
    these there no none not see per please report reports final findings finding impression
    impressions indication history comparison technique examination exam addendum note notes
    wet read recommendation procedure clinical reason patient patients physician physicians
    resident residents attending fellow nurse nursing team service radiology radiologist
    department emergency icu micu sicu ccu ed er or pacu floor unit clinic telephone phone
    page pager email fax voicemail message chest lung lungs heart left right bilateral upper
    lower middle lobe lingula pleural effusion pneumothorax normal stable unchanged new mild
    moderate severe small large portable upright supine frontal lateral view views single two
    ap pa lat ct cta mr mri pet us cxr xr kub ekg ecg echo ng og et ett picc ij svc ivc cvc
    rul rml rll lul lll copd chf ards tb hiv md do rn np pa-c phd mph facr frcr
    kerley swan ganz swan-ganz foley hampton westermark pancoast fleischner bochdalek morgagni
    graves parkinson hodgkin crohn dobhoff harrington luschka schatzki zenker barrett valsalva
    wegener kartagener poland golden tietze horner chilaiditi boerhaave mounier-kuhn
    swyer-james loeffler caplan langerhans hamman rigler nissen whipple ivor lewis hickman
    groshong broviac quinton port-a-cath mediport pleurx sengstaken blakemore salem levin
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow
    mrn acc dob ssn id pid contact call called page paged discussed dictated signed reviewed
    reported communicated notified informed transferred questions results images outside
    prior compared study studies order encounter accession medical record unit age aged sex
    male female man woman address phone dear thank thanks also radiograph radiographs film
    films image projection practitioner surgeon technologist caregiver phi
    """
)
# Words after a surname that make it an eponym, not a person.
EPONYM_NEXT = _words(
    """
    syndrome disease sign signs line lines tube catheter hernia tumor tumour procedure
    fundoplication esophagectomy criteria classification score maneuver manoeuvre rod rods
    test lymphoma granulomatosis view position band effect phenomenon law ratio index method
    technique operation repair shunt valve filter fracture deformity
    """
)
_LOWER_STOP = NOT_NAMES | {"he", "she", "they", "we", "it", "his", "her", "their"}
# Cue phrases before a name (lower case words); label cues need a colon after them.
_CUES = (
    "discussed with", "called to", "communicated to", "conveyed to", "reported to",
    "relayed to", "reviewed with", "spoke with", "spoken with", "confirmed with", "notified",
    "paged", "informed", "contacted", "contact", "page", "by", "report for", "cc",
)  # fmt: skip
# Role and relation words directly before a name: "resident Tomasz W.", "daughter, Maria".
_ROLE_CUES = (
    "resident", "attending", "fellow", "nurse", "technologist", "radiologist", "physician",
    "surgeon", "practitioner", "np", "rn", "pa", "daughter", "son", "wife", "husband", "mother",
    "father", "sister", "brother", "friend", "caregiver", "partner", "spouse", "guardian",
)  # fmt: skip
_LABEL_CUES = (
    "patient", "patient name", "name", "attending", "attending radiologist", "radiologist",
    "resident", "fellow", "physician", "referring physician", "ordering physician",
    "technologist", "provider", "dictated", "signed",
)  # fmt: skip


_CueTable = dict[str, list[tuple[tuple[str, ...], bool]]]


def _cue_table(phrases: Iterable[str], colon: bool) -> _CueTable:
    table: _CueTable = {}
    for phrase in phrases:
        words = tuple(phrase.split())
        table.setdefault(words[-1], []).append((words, colon))
    return table


_CUE_BY_LAST = _cue_table(_CUES + _ROLE_CUES, False)
for _k, _v in _cue_table(_LABEL_CUES, True).items():
    _CUE_BY_LAST.setdefault(_k, []).extend(_v)
# lower-case words where a name search starts: titles, last words of cues, gazetteer names
_NAME_STARTS = TITLES | set(_CUE_BY_LAST) | FIRST_NAMES | LAST_NAMES

# --- regexes -----------------------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z](?:[A-Za-z'\u2019-]*[A-Za-z])?")
_MONTH_NAMES = [
    *("January", "Jan", "February", "Feb", "March", "Mar", "April", "Apr", "May", "June", "Jun"),
    *("July", "Jul", "August", "Aug", "September", "Sept", "Sep", "October", "Oct", "November"),
    *("Nov", "December", "Dec"),
]
_MONTH = "(?:" + "|".join(_MONTH_NAMES + [m.upper() for m in _MONTH_NAMES]) + r")\.?"
_DAY = r"(?:3[01]|[12]\d|0?[1-9])"
_ORD = r"(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]|2[01])\d{2}"
_MM = r"(?:1[0-2]|0?[1-9])"
_AMPM = r"(?:[AaPp]\.\s?[Mm]\.|[AaPp][Mm]\b)"


class Gate:
    """Cheap facts about a text, found in one pass by `_gates`: a rule only runs when its gate
    holds (speed only; a rule whose gate fails cannot match). "N digits" = a run of exactly N."""

    DIGITS_1_2 = "a run of 1-2 digits"
    DIGITS_3_PLUS = "a run of 3+ digits"
    DIGITS_4 = "a run of 4 digits"
    DIGITS_5 = "a run of 5 digits"
    DIGITS_4_5 = "a run of 4-5 digits"
    DIGITS_6_PLUS = "a run of 6+ digits"
    NUMERIC_DATE = "digits, then / - or . and a digit"
    CLOCK = "1-2 digits, then a colon"
    AGE_OVER_89 = "a 2-3 digit number in 90..119"
    AT_SIGN = "an @"
    URL_PREFIX = "http or www."
    MONTH_NAME = "a month name (word)"
    STREET = "a number and a street word (Street, Ave, ...)"


# (kind, gate, pattern): a rule only runs when its gate holds for the text (see Gate, _gates).
_RULES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (kind, gate, re.compile(pattern))
    for kind, gate, pattern in (
        # dates with a month name: "March 3rd, 2019", "3 Mar 2019", "3rd of March", "Jan 2019"
        ("DATE", Gate.MONTH_NAME, rf"\b{_MONTH}\s+{_DAY}{_ORD}\b(?:,?\s+{_YEAR}\b)?"),
        ("DATE", Gate.MONTH_NAME, rf"\b{_DAY}{_ORD}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR}\b)?"),
        ("DATE", Gate.MONTH_NAME, rf"\b{_MONTH},?\s+{_YEAR}\b"),
        ("DATE", Gate.MONTH_NAME, rf"\b{_DAY}[-/]{_MONTH}[-/](?:{_YEAR}|\d{{2}})\b"),
        # numeric dates: 3/14/2019, 03-14-19, 2019-03-14, 2019/03/14, 14.03.2019
        ("DATE", Gate.NUMERIC_DATE, rf"\b{_MM}[/-]{_DAY}[/-](?:{_YEAR}|\d{{2}})\b(?![/-]\d)"),
        ("DATE", Gate.NUMERIC_DATE, rf"\b{_YEAR}[/-]{_MM}[/-]{_DAY}\b"),
        ("DATE", Gate.NUMERIC_DATE, rf"\b{_DAY}\.{_MM}\.{_YEAR}\b"),
        # month/day without a year only after a date word: "on 3/14", "dated 3/14"
        (
            "DATE",
            Gate.NUMERIC_DATE,
            rf"(?i:\b(?:on|from|dated|since|of|prior to|until|through|comparison:)\s+)"
            rf"(?P<v>{_MM}/{_DAY})\b(?![/\d])",
        ),
        # times: 14:30, 9:15 a.m., 09:15:22, 9pm, 0915 hours, "at 0915"
        ("TIME", Gate.CLOCK, rf"\b(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s?{_AMPM})?"),
        ("TIME", Gate.DIGITS_1_2, rf"\b(?:1[0-2]|0?[1-9])\s?{_AMPM}"),
        ("TIME", Gate.DIGITS_4, r"\b(?:[01]\d|2[0-3])[0-5]\d\s?(?:hours|hrs|h)\b"),
        ("TIME", Gate.DIGITS_4, r"(?i:\bat\s+)(?P<v>(?:[01]\d|2[0-3])[0-5]\d)\b(?![.,]\d)"),
        # ages over 89: "92-year-old", "95 y/o", "91F", "age 93", "aged 101"
        (
            "AGE",
            Gate.AGE_OVER_89,
            r"\b(?P<v>9\d|1[01]\d)(?=\s?-?\s?(?:years?\b|yrs?\b|yo\b|y/o|y\.o\.|year-old)"
            r"|\s?(?:M|F|male|female|man|woman)\b)",
        ),
        ("AGE", Gate.AGE_OVER_89, r"(?i:\bage[ds]?\s*:?\s*)(?P<v>9\d|1[01]\d)\b"),
        # identifiers after a label: MRN, MR#, accession, order, encounter, SSN, patient ID
        (
            "ID",
            Gate.DIGITS_3_PLUS,
            r"(?i:\b(?:MRN|MR\s?#|MR\s?No\.?|medical\s+record\s+(?:number|no\.?|#)|unit\s+no\.?"
            r"|acc(?:ession)?(?:\s*(?:number|no\.?|#))?|order\s*(?:number|no\.?|#)?"
            r"|encounter(?:\s+(?:id|number|no\.?|#))?|visit\s+(?:id|number|#)|account\s*(?:number|#)"
            r"|patient\s+id|pid|ssn|social\s+security(?:\s+number)?|study\s+id|id)\s*[:#]?\s*)"
            r"(?P<v>[A-Z]{0,4}-?\d[\d-]{2,}\d)\b",
        ),
        # identifiers anywhere: 6+ digits, A12345678, RAD-2019-012345, SSN 123-45-6789
        ("ID", Gate.DIGITS_6_PLUS, r"\b[A-Z]{0,4}-?\d{6,}\b"),
        ("ID", Gate.DIGITS_4, r"\b[A-Z]{2,5}-\d{2,4}-\d{4,}\b"),
        ("ID", Gate.DIGITS_4, r"\b\d{3}-\d{2}-\d{4}\b"),
        # phones: (617) 555-0123, 617.555.0123, +1 617 555 0123, 1-800-555-0199 ext. 42
        (
            "PHONE",
            Gate.DIGITS_4,
            r"(?:\+1[\s.-]?|\b1[\s.-])?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b"
            r"(?:\s*(?i:ext\.?|extension|x)\s*\d{1,5}\b)?",
        ),
        (
            "PHONE",
            Gate.DIGITS_4_5,
            r"(?i:\b(?:pager|beeper|ext\.?|extension)\s*#?\s*)(?P<v>\d{4,5})\b",
        ),
        ("PHONE", Gate.DIGITS_4_5, r"\bx(?P<v>\d{4,5})\b"),
        ("EMAIL", Gate.AT_SIGN, r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
        ("URL", Gate.URL_PREFIX, r"(?i:\b(?:https?://|www\.))[^\s<>\"]*[^\s<>\".,;:)]"),
        # street addresses with optional unit, city, state and ZIP; "City, ST 02115"
        (
            "ADDRESS",
            Gate.STREET,
            r"\b\d{1,5}\s+(?:[A-Z][a-z]+\.?\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard"
            r"|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Parkway|Pkwy|Terrace|Circle|Highway"
            r"|Hwy)\b\.?(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|Rm)\.?\s*#?\s*\w+)?"
            r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,?\s+[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?)?",
        ),
        (
            "ADDRESS",
            Gate.DIGITS_5,
            r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b",
        ),
    )
)
# Hospitals: a suffix word found first, then up to 5 capitalized words (with of / and / &)
# before it; leading generic words ("Outside", "The") are trimmed off.
_HOSPITAL_SUFFIX = re.compile(
    r"\b(?:Hospital|Medical\s+Cent(?:er|re)|Health\s+(?:Center|System)|Clinic|Infirmary"
    r"|Cancer\s+Center)\b(?:\s+of\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)?"
)
_HOSPITAL_HEAD = re.compile(
    r"(?<![\w'\u2019.])(?:(?:St\.|Saint)\s+)?(?:[A-Z][A-Za-z'\u2019.-]*\s+(?:(?:of|and|&)\s+)?){1,5}\Z"
)
_HOSPITAL_SUFFIX_WORDS = frozenset(
    {"Hospital", "Center", "Centre", "System", "Clinic", "Infirmary"}
)
_HOSPITAL_LEAD_STOP = _words(
    "The An A Our This That Outside Another Local Prior From At To In Transferred Seen Films "
    "Imaging Study Comparison Compared With Outpatient"
)
_RIGHT_CUE = re.compile(
    r",?\s+(?:was|were|has\s+been|have\s+been)\s+(?:notified|informed|paged|called|contacted"
    r"|made\s+aware)\b|,\s+(?:MD|M\.D\.|DO|RN|NP|PA-C|PhD)\b"
)
_RIGHT_CUE_WORDS = (
    *("notified", "informed", "paged", "called", "contacted", "aware"),
    *(", MD", ", M.D.", ", DO", ", RN", ", NP", ", PA-C", ", PhD"),
)
_DIGITS = re.compile(r"\d+")
_MONTH_WORDS = frozenset(_MONTH_NAMES) | {m.upper() for m in _MONTH_NAMES}
_STREET_WORDS = _words(
    "Street St Avenue Ave Road Rd Boulevard Blvd Lane Ln Drive Dr Court Ct Way Place Pl "
    "Parkway Pkwy Terrace Circle Highway Hwy"
)
_NAME_COMMA = re.compile(r"\b([A-Z][A-Za-z'\u2019-]+),\s([A-Z][A-Za-z'\u2019-]+)(?:\s([A-Z])\b)?")
_METRIC_TOKEN = re.compile(r"[A-Za-z]+|\d+")


@dataclass(slots=True)
class DeidResult:
    """text: scrubbed text; spans: merged (start, end, kind) PHI spans into the ORIGINAL text."""

    text: str
    spans: list[Span] = field(default_factory=list)


# --- names -------------------------------------------------------------------------------------
def _namey(word: str) -> bool:
    """A capitalized word that may be part of a name (Smith, SMITH, O'Brien, Smith-Jones);
    not a report word, not Open-I's XXXX mask."""
    return (
        len(word) > 1
        and word[0].isupper()
        and word.lower() not in NOT_NAMES
        and word.strip("X") != ""
    )


def _initial(word: str) -> bool:
    return len(word) == 1 and word.isupper()


def _take_name(
    text: str, words: list[tuple[int, int, str]], j: int, *, lower_ok: bool = False
) -> tuple[int, int]:
    """Name tokens from words[j]: (index after the name, end offset); (j, -1) if none."""
    end, k, commas, prev_dot_ok, real = -1, j, 0, False, 0
    while k < len(words) and k - j < 5:
        s, e, w = words[k]
        if k > j:
            gap = text[words[k - 1][1] : s]
            if gap == ", " and commas == 0 and real == 1:
                commas = 1
            elif not (gap.isspace() and len(gap) <= 2) and not (prev_dot_ok and gap == ". "):
                break
        if len(w) >= 4 and w.strip("X") == "":  # Open-I's XXXX mask is not a name
            break
        if _initial(w):
            prev_dot_ok = True
        elif _namey(w) or (lower_ok and k == j and w.lower() not in _LOWER_STOP):
            prev_dot_ok, real = False, real + 1
        else:
            break
        end, k = e, k + 1
    if real == 0:
        return j, -1
    # drop a trailing ", " taken for a comma that led nowhere
    return k, end


def _cue_at(words: list[tuple[int, int, str]], i: int, text: str) -> bool:
    """Whether a cue phrase ends at words[i] (label cues need a ':' right after)."""
    options = _CUE_BY_LAST.get(words[i][2].lower())
    if not options:
        return False
    for phrase, colon in options:
        n = len(phrase)
        if i + 1 < n:
            continue
        if any(words[i - n + 1 + t][2].lower() != phrase[t] for t in range(n)):
            continue
        after = text[words[i][1] : words[i + 1][0]] if i + 1 < len(words) else ""
        if colon:
            if after.strip() == ":" and len(after) <= 3:
                return True
        elif (after.isspace() and len(after) <= 3) or after in (", ", ": "):
            return True
    return False


def _names(text: str, words: list[tuple[int, int, str]]) -> list[Span]:
    spans: list[Span] = []
    for i, (s, e, w) in enumerate(words):
        lw = w.lower()
        if lw not in _NAME_STARTS:
            continue
        nxt = i + 1
        if lw in TITLES and nxt < len(words):
            gap = text[e : words[nxt][0]]
            if gap in (" ", ". ", "."):
                abbreviated = lw in _ABBREVIATED_TITLES and gap.startswith(".")
                if abbreviated or gap == " ":
                    _, end = _take_name(text, words, nxt, lower_ok=abbreviated)
                    if end > 0:
                        spans.append((s, end, "NAME"))
                        continue
        if nxt < len(words) and _cue_at(words, i, text) and words[nxt][2].lower() not in TITLES:
            _, end = _take_name(text, words, nxt)
            if end > 0:
                spans.append((words[nxt][0], end, "NAME"))
                continue
        if w[0].isupper() and (lw in FIRST_NAMES or lw in LAST_NAMES) and lw not in NOT_NAMES:
            _, end = _take_name(text, words, i)
            # a first name needs a second name token; a known surname stands alone, unless it
            # is an eponym here ("Williams syndrome")
            after = _WORD.match(text, end + 1) if text[end : end + 1] == " " else None
            if after is not None and after.group().lower() in EPONYM_NEXT:
                continue
            if end > e or (lw in LAST_NAMES and end > 0):
                start = _extend_left(text, words, i) if lw in LAST_NAMES else s
                spans.append((start, end, "NAME"))
    if any(cue in text for cue in _RIGHT_CUE_WORDS):
        for m in _RIGHT_CUE.finditer(text):  # "Zebulon Quackenbush was notified", "Smith, MD"
            start = _name_before(text, words, m.start())
            if start >= 0:
                spans.append((start, m.start(), "NAME"))
    for m in _NAME_COMMA.finditer(text):  # "SMITH, JOHN A" / "Smith, John"
        last, first = m.group(1), m.group(2)
        if last.lower() in NOT_NAMES or first.lower() in NOT_NAMES:
            continue
        known = last.lower() in LAST_NAMES or first.lower() in FIRST_NAMES
        if known or (last.isupper() and first.isupper() and len(last) > 1 and len(first) > 1):
            spans.append((m.start(), m.end(), "NAME"))
    return spans


def _extend_left(text: str, words: list[tuple[int, int, str]], i: int) -> int:
    """Start of a known surname words[i] with up to 2 first names / initials before it."""
    start, k = words[i][0], i - 1
    while k >= 0 and i - k <= 2:
        w, gap = words[k][2], text[words[k][1] : words[k + 1][0]]
        named = gap == " " and _namey(w) and w.lower() not in TITLES
        if not (named or (_initial(w) and gap in (". ", " "))):
            break
        start, k = words[k][0], k - 1
    return start


def _name_before(text: str, words: list[tuple[int, int, str]], pos: int) -> int:
    """Start offset of the name tokens that end right before `pos` (-1 if none)."""
    k = bisect.bisect_right(words, pos, key=lambda x: x[1]) - 1
    start = -1
    while k >= 0 and pos - words[k][1] < 40:
        w = words[k][2]
        if start >= 0:
            gap = text[words[k][1] : words[k + 1][0]]
            if not (gap.isspace() or (_initial(w) and gap == ". ")):
                break
        elif text[words[k][1] : pos].strip(" ,"):
            break
        if not (_namey(w) or _initial(w)) or w.lower() in TITLES:
            break
        start, k = words[k][0], k - 1
    return start


# --- spans -------------------------------------------------------------------------------------
def _hospitals(text: str) -> list[Span]:
    spans = []
    for m in _HOSPITAL_SUFFIX.finditer(text):
        lo = max(0, m.start() - 90)
        head = _HOSPITAL_HEAD.search(text, lo, m.start())
        if head is None:
            continue
        start = head.start()
        while True:  # drop leading generic words ("Outside", "The", ...)
            w = _WORD.match(text, start)
            if w is None or w.group() not in _HOSPITAL_LEAD_STOP:
                break
            start = (
                w.end() + len(text[w.end() : m.start()]) - len(text[w.end() : m.start()].lstrip())
            )
        if start < m.start():
            spans.append((start, m.end(), "HOSPITAL"))
    return spans


def _gates(text: str, wordset: set[str]) -> set[str]:
    """The Gate facts that hold for `text` (its words: `wordset`)."""
    gates = set()
    for m in _DIGITS.finditer(text):
        s, e = m.span()
        n, after = e - s, text[e : e + 2]
        gates.add(Gate.DIGITS_1_2 if n <= 2 else Gate.DIGITS_3_PLUS)
        if n >= 4:
            gates.add(Gate.DIGITS_4 if n == 4 else Gate.DIGITS_5 if n == 5 else Gate.DIGITS_6_PLUS)
            if n <= 5:
                gates.add(Gate.DIGITS_4_5)
        if len(after) == 2 and after[0] in "/-." and after[1].isdigit():
            gates.add(Gate.NUMERIC_DATE)
        if n <= 2 and after[:1] == ":":
            gates.add(Gate.CLOCK)
        if 2 <= n <= 3 and 90 <= int(text[s:e]) <= 119:
            gates.add(Gate.AGE_OVER_89)
    if "@" in text:
        gates.add(Gate.AT_SIGN)
    if "http" in text or "www." in text or "HTTP" in text or "WWW." in text:
        gates.add(Gate.URL_PREFIX)
    if not _MONTH_WORDS.isdisjoint(wordset):
        gates.add(Gate.MONTH_NAME)
    if gates & {Gate.DIGITS_1_2, Gate.DIGITS_3_PLUS} and not _STREET_WORDS.isdisjoint(wordset):
        gates.add(Gate.STREET)
    return gates


def find_phi(text: str, cfg: DeidConfig | None = None) -> list[Span]:
    """Merged, sorted (start, end, kind) PHI spans; overlapping spans keep the longest's kind."""
    kinds = set((cfg or DeidConfig()).kinds)
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    wordset = {w for _, _, w in words}
    gates = _gates(text, wordset)
    found: list[Span] = []
    for kind, gate, rx in _RULES:
        if gate in gates and kind in kinds:
            if "v" in rx.groupindex:
                found += [(*m.span("v"), kind) for m in rx.finditer(text)]
            else:
                found += [(*m.span(), kind) for m in rx.finditer(text)]
    if "HOSPITAL" in kinds and not _HOSPITAL_SUFFIX_WORDS.isdisjoint(wordset):
        found += _hospitals(text)
    if "NAME" in kinds:
        found += _names(text, words)
    return _merge(found)


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e, kind in sorted(spans, key=lambda x: (x[0], -x[1])):
        if out and s <= out[-1][1]:
            ps, pe, pk = out[-1]
            keep = pk if pe - ps >= e - s else kind
            out[-1] = (ps, max(pe, e), keep)
        else:
            out.append((s, e, kind))
    return out


def deidentify(text: str, cfg: DeidConfig | None = None) -> DeidResult:
    """Replace every PHI span (of the kinds in `cfg.kinds`) of `text` with "[PHI]"."""
    spans = find_phi(text, cfg)
    parts, pos = [], 0
    for s, e, _ in spans:
        parts += [text[pos:s], PHI_TOKEN]
        pos = e
    parts.append(text[pos:])
    return DeidResult("".join(parts), spans)


def _deid_one(text: str) -> DeidResult:
    return deidentify(text)


def deidentify_batch(texts: Iterable[str], *, workers: int = 1, chunksize: int = 64):
    """deidentify() over many texts, in order; workers > 1 uses a process pool."""
    if workers <= 1:
        return [deidentify(t) for t in texts]
    with get_context("spawn").Pool(workers) as pool:
        return pool.map(_deid_one, list(texts), chunksize=chunksize)


def name_words(text: str, spans: Iterable[Span]) -> set[str]:
    """Lower-case words inside NAME spans, titles excluded (for the vocabulary audit)."""
    out = set()
    for s, e, kind in spans:
        if kind == "NAME":
            out |= {w.lower() for w in _WORD.findall(text[s:e]) if w.lower() not in TITLES}
    return {w for w in out if len(w) > 1}


# --- evaluation ----------------------------------------------------------------------------------
@dataclass(kw_only=True, slots=True)
class PhiScore:
    """Token-level scores; tokens are letter runs and digit runs ("91F" -> "91", "F").

    A ground-truth PHI token is recalled when predicted spans cover it entirely; a token is
    "scrubbed" when a predicted span touches it; precision = scrubbed PHI / scrubbed tokens.
    """

    phi_tokens: int = 0
    recalled: int = 0
    scrubbed: int = 0
    scrubbed_phi: int = 0
    by_kind: Counter = field(default_factory=Counter)  # kind -> PHI tokens
    recalled_by_kind: Counter = field(default_factory=Counter)

    def add(self, text: str, predicted: Iterable[Span], truth: Iterable[Span]) -> None:
        pred, true = list(predicted), list(truth)
        for m in _METRIC_TOKEN.finditer(text):
            s, e = m.span()
            kinds = [k for ts, te, k in true if ts < e and s < te]
            covered = _covered(pred, s, e)
            touched = any(ps < e and s < pe for ps, pe, _ in pred)
            if kinds:
                self.phi_tokens += 1
                self.by_kind[kinds[0]] += 1
                if covered:
                    self.recalled += 1
                    self.recalled_by_kind[kinds[0]] += 1
            if touched:
                self.scrubbed += 1
                self.scrubbed_phi += bool(kinds)

    @property
    def recall(self) -> float:
        return self.recalled / self.phi_tokens if self.phi_tokens else 1.0

    @property
    def precision(self) -> float:
        return self.scrubbed_phi / self.scrubbed if self.scrubbed else 1.0


def _covered(spans: list[Span], s: int, e: int) -> bool:
    pos = s
    for ps, pe, _ in spans:
        if ps <= pos < pe:
            pos = pe
            if pos >= e:
                return True
    return pos >= e


# --- audit -------------------------------------------------------------------------------------
@dataclass(kw_only=True, slots=True)
class AuditReport:
    """What de-identification would scrub in a set of reports."""

    reports: int = 0
    reports_with_phi: int = 0
    counts: Counter = field(default_factory=Counter)  # kind -> spans
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> (id, ctx)


def audit(items: Iterable[tuple[str, str]], *, examples: int = 3, context: int = 30) -> AuditReport:
    """Run the de-id pass over (report id, text) pairs; count kinds, keep examples in context."""
    rep = AuditReport()
    for rid, text in items:
        spans = find_phi(text)
        rep.reports += 1
        rep.reports_with_phi += bool(spans)
        for s, e, kind in spans:
            rep.counts[kind] += 1
            shown = rep.examples.setdefault(kind, [])
            if len(shown) < examples:
                left = text[max(0, s - context) : s]
                right = text[e : e + context]
                snippet = " ".join(f"{left}<<{text[s:e]}>>{right}".split())
                shown.append((rid, snippet))
    return rep


def format_audit(rep: AuditReport) -> Iterator[str]:
    """Human-readable lines of an audit report."""
    yield f"{rep.reports} reports, {rep.reports_with_phi} with PHI to scrub"
    for kind in KINDS:
        if rep.counts[kind]:
            yield f"{kind:9s} {rep.counts[kind]:7d}"
            for rid, snippet in rep.examples.get(kind, []):
                yield f"    {rid}: ...{snippet}..."
