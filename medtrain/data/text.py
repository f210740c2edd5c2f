"""THE report -> training-text path: de-identification, then sectioning and cleaning.

Every consumer of report text goes through here: the records pipeline
(data/pipeline.py), the shard writer (data/shards/write.py), the tokenizer trainer
(cli/tokenizer.py) and evaluation (through the pipeline). No other module calls the
de-identifier or the sectioner on raw report text (tests/unit/test_text_path.py checks it).

- `record_text(rec, deid)`: a Record's report -> training text. De-identification with the
  configured backend (data.deid.backend; `rules` = data/deid.py), then
  `reports.section_and_clean` (FINDINGS + IMPRESSION, fallbacks, masks -> [PHI], whitespace).
- `scrub_text(text, deid)`: a corpus document (tokenizer --scrub) -> de-identified text with
  whitespace collapsed; no sectioning, a corpus line is not a report.
- With `deid.enabled` false de-identification is skipped: only for sources de-identified at the
  source; the text-path id says so ("deid": "off") and training logs it once per run.
- `TEXT_PATH_VERSION` names the de-id rules version and the sectioning version; `text_path_id`
  adds the de-id configuration and a short hash of both. Shard manifests and tokenizer
  directories record it; `prepare` refuses to add to shards written under another id, and
  training warns when the shards' id differs from the run's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from medtrain.data import deid as rules
from medtrain.data.config import DeidConfig
from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.reports import SECTIONING_VERSION, section_and_clean

# The de-id rules' version (a later backend adds its own) and the sectioning version.
TEXT_PATH_VERSION = f"deid-rules-{rules.RULES_VERSION}+sections-{SECTIONING_VERSION}"


def _deidentify(text: str, deid: DeidConfig, found_names: set[str] | None) -> str:
    """`text` with PHI replaced by [PHI] (unchanged when deid.enabled is false)."""
    if not deid.enabled:
        return text
    if deid.backend != "rules":  # DeidConfig validates the name; a new backend goes here
        raise DataError(f"data.deid.backend {deid.backend!r} has no implementation")
    result = rules.deidentify(text, deid)
    if found_names is not None:
        found_names |= rules.name_words(text, result.spans)
    return result.text


def record_text(rec: Record, deid: DeidConfig, *, found_names: set[str] | None = None) -> str:
    """The training text of `rec`'s report: de-identified, then sectioned and cleaned.

    `found_names`, when given, receives the lower-case words the de-identifier took for names
    (the tokenizer's vocabulary audit). Raises DataError for a record without a report, an
    empty report, or one with nothing but section headers.
    """
    if rec.report is None:
        raise DataError(f"record {rec.id} has no report")
    return section_and_clean(_deidentify(rec.report, deid, found_names))


def scrub_text(text: str, deid: DeidConfig, *, found_names: set[str] | None = None) -> str:
    """A corpus document de-identified (per `deid`) with whitespace collapsed; no sectioning."""
    return " ".join(_deidentify(text, deid, found_names).split())


def text_path_id(deid: DeidConfig) -> dict[str, Any]:
    """Provenance of the text path under `deid`: {"version", "deid", "hash"}.

    "deid" is {"backend", "kinds"} or "off" (de-identified at the source);
    "hash" (12 hex) covers version and deid, so two ids are equal exactly when the texts are.
    """
    if deid.enabled:
        how: Any = {"backend": deid.backend, "kinds": sorted(deid.kinds)}
    else:
        how = "off"
    body = {"version": TEXT_PATH_VERSION, "deid": how}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return {**body, "hash": digest}


def describe_text_path(tp: dict[str, Any]) -> str:
    """One line for logs and errors: "deid-rules-1+sections-1, deid rules (10 kinds) [hash]"."""
    if not tp:
        return "unrecorded (written before text paths were recorded)"
    how = tp.get("deid")
    if how == "off":
        what = "de-identification off"
    elif isinstance(how, dict):
        what = f"deid {how.get('backend')} ({len(how.get('kinds', ()))} kinds)"
    else:
        what = f"deid {how}"
    return f"{tp.get('version')}, {what} [{tp.get('hash')}]"
