"""The one report -> training-text path (medtrain/data/text.py), end to end on every layout.

For every synthetic layout, with PHI injected into every report: the records path (what
PairDataset and evaluation train/evaluate on), the shard writer and the tokenizer trainer give
the same training text, and none of it holds any injected PHI value (phi_ground_truth.jsonl).
The PHI check is shown to find leaks when de-identification is off, so it can fail.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import tarfile
from pathlib import Path

import pytest

from medtrain.data.config import SPLITS, DataConfig, DeidConfig, ShardConfig
from medtrain.data.deid import RULES_VERSION
from medtrain.data.errors import DataError
from medtrain.data.pipeline import load_records
from medtrain.data.records import Record
from medtrain.data.reports import SECTIONING_VERSION
from medtrain.data.shards.write import prepare_shards
from medtrain.data.sources import source_options
from medtrain.data.text import TEXT_PATH_VERSION, record_text, scrub_text, text_path_id
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate
from medtrain.synth.layouts import REPORT_LAYOUTS as LAYOUTS  # layouts with reports

PACKAGE = Path(__file__).resolve().parents[2] / "medtrain"
_TOKEN = re.compile(r"[A-Za-z]+|\d+")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """Every layout, n=40, PHI in every report, 64 px images (shared by all tests here)."""
    roots = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MEDTRAIN_ID_SALT", raising=False)  # truth report_id = Record.study_id
        for layout in LAYOUTS:
            roots[layout] = tmp_path_factory.mktemp(layout)
            generate(
                SynthConfig(layout=layout, n=40, phi_fraction=1.0, image_size=64), roots[layout]
            )
    return roots


def phi_truth(root: Path) -> dict[str, list[tuple[int, int, str]]]:
    """report_id (= Record.study_id) -> PHI spans into the raw report."""
    truth: dict[str, list] = {}
    for line in (root / "phi_ground_truth.jsonl").read_text().splitlines():
        row = json.loads(line)
        truth.setdefault(row["report_id"], []).extend(tuple(s) for s in row["spans"])
    return truth


def records_path(layout: str, root: Path, deid: DeidConfig) -> tuple[dict, dict]:
    """(id -> training text, id -> Record) over all splits, as load_records (PairDataset and
    evaluation) builds them."""
    cfg = DataConfig(source=layout, root=str(root), deid=deid)
    texts, records = {}, {}
    for split in SPLITS:
        try:
            recs, txts, _ = load_records(cfg, split)
        except DataError as e:  # a small layout may have an empty split
            assert "no usable" in str(e)
            continue
        for rec, text in zip(recs, txts, strict=True):
            texts[rec.id], records[rec.id] = text, rec
    return texts, records


def shard_texts(out: Path) -> dict[str, str]:
    """id -> the .txt member of each sample, read from the tars themselves."""
    texts = {}
    for path in sorted(out.glob("shard-*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[: -len(".json")]
                texts[json.loads(data)["id"]] = members[f"{key}.txt"].decode("utf-8")
    return texts


class PhiValues:
    """The injected PHI of one layout and a check for it in text.

    A value leaks when it appears as a whole (case-insensitive, not inside a longer token), or
    when one of its letter/digit runs of 3+ characters appears as a token and is not an ordinary
    report word (one found outside the PHI spans of the layout's reports).
    """

    def __init__(self, records: dict[str, Record], truth: dict[str, list]) -> None:
        self.by_study: dict[str, list[str]] = {}
        ordinary: set[str] = set()
        for rec in records.values():
            spans, pos = sorted(truth.get(rec.study_id, [])), 0
            for s, e, _ in spans:
                ordinary |= {w.lower() for w in _TOKEN.findall(rec.report[pos:s])}
                pos = max(pos, e)
            ordinary |= {w.lower() for w in _TOKEN.findall(rec.report[pos:])}
            self.by_study[rec.study_id] = [rec.report[s:e] for s, e, _ in spans]
        self.ordinary = ordinary
        self.n = sum(map(len, self.by_study.values()))

    def leaks(self, text: str, study_id: str | None = None) -> list[tuple[str, str]]:
        """(PHI value, what leaked) in `text`; study_id None checks every report's PHI."""
        values = (
            self.by_study.get(study_id, [])
            if study_id is not None
            else [v for vs in self.by_study.values() for v in vs]
        )
        low, words = text.lower(), {w.lower() for w in _TOKEN.findall(text)}
        out = []
        for value in values:
            whole = r"(?<![a-z0-9])" + re.escape(value.lower()) + r"(?![a-z0-9])"
            if (study_id is not None or len(value) >= 5) and re.search(whole, low):
                out.append((value, value))
            for w in {w.lower() for w in _TOKEN.findall(value)}:
                if len(w) >= 3 and w not in self.ordinary and w in words:
                    out.append((value, w))
        return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_records_and_shards_give_the_same_phi_free_text(layout, layouts, tmp_path):
    root = layouts[layout]
    deid = DeidConfig()
    texts, records = records_path(layout, root, deid)
    assert len(texts) >= 30, len(texts)

    cfg = DataConfig(source=layout, root=str(root), deid=deid)
    summary = prepare_shards(
        source=layout,
        root=root,
        out=tmp_path / "shards",
        split="all",
        cfg=ShardConfig(shard_size=16, image_size=64),
        deid=deid,
        **source_options(cfg),
    )
    from_shards = shard_texts(tmp_path / "shards")
    assert summary["samples"] == len(from_shards)
    assert from_shards == texts  # same ids, same text, sample for sample

    phi = PhiValues(records, phi_truth(root))
    assert phi.n >= len(records)  # every report carries injected PHI
    leaks = {rid: phi.leaks(text, records[rid].study_id) for rid, text in texts.items()}
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}

    # The check has teeth: without de-identification the same texts leak.
    raw_texts, _ = records_path(layout, root, DeidConfig(enabled=False))
    leaked = [rid for rid, text in raw_texts.items() if phi.leaks(text, records[rid].study_id)]
    assert len(leaked) >= len(raw_texts) // 4, len(leaked)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tokenizer_input_is_the_text_path_and_vocabulary_is_phi_free(layout, layouts, tmp_path):
    from medtrain.cli import main
    from medtrain.cli.tokenizer import _reader_reports
    from medtrain.data.tokenizer import load_tokenizer, train_tokenizer

    root = layouts[layout]
    texts, records = records_path(layout, root, DeidConfig())
    phi = PhiValues(records, phi_truth(root))
    names: set[str] = set()
    docs = _reader_reports(layout, str(root), ["train"], names)
    train_texts = {t for rid, t in texts.items() if records[rid].split == "train"}
    assert set(docs) == train_texts and len(docs) == len({
        records[rid].study_id for rid in texts if records[rid].split == "train"
    })  # fmt: skip
    assert not [leak for doc in docs for leak in phi.leaks(doc)]
    raw_texts, _ = records_path(layout, root, DeidConfig(enabled=False))
    assert [leak for doc in raw_texts.values() for leak in phi.leaks(doc)]  # the check has teeth
    assert names  # the de-identifier's name words reach the vocabulary audit

    out = tmp_path / "tok"
    # a vocabulary large enough to take every word seen twice (PHI included, were it there)
    argv = ["tokenizer", "train", "--root", str(root), "--source", layout, "--vocab-size", "3000"]
    assert main([*argv, "--no-baseline", "--out", str(out)]) == 0
    vocab = {t.removeprefix("##") for t in load_tokenizer(out).get_vocab()}
    # PHI runs that no ordinary word contains (a word piece may come from an ordinary word:
    # "com" from "compared")
    phi_tokens = {
        w.lower()
        for vs in phi.by_study.values()
        for v in vs
        for w in _TOKEN.findall(v)
        if len(w) >= 3 and not any(w.lower() in o for o in phi.ordinary)
    }
    assert phi_tokens and not vocab & phi_tokens, sorted(vocab & phi_tokens)
    raw_vocab = train_tokenizer(list(raw_texts.values()), vocab_size=3000, out_dir=None)
    assert {t.removeprefix("##") for t in raw_vocab.get_vocab()} & phi_tokens  # teeth again
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["text_path"] == text_path_id(DeidConfig())


def test_record_text_and_scrub_text():
    deid = DeidConfig()
    report = "FINDINGS: Lungs clear.\nIMPRESSION: Discussed with Dr. Smith at 10:15.\n"
    rec = Record(id="a", image_path=Path("a.png"), report=report)
    names: set[str] = set()
    assert record_text(rec, deid, found_names=names) == (
        "Lungs clear. Discussed with [PHI] at [PHI]."
    )
    assert names == {"smith"}
    off = record_text(rec, DeidConfig(enabled=False))
    assert off == "Lungs clear. Discussed with Dr. Smith at 10:15."
    assert record_text(rec, DeidConfig(kinds=("TIME",))) == (
        "Lungs clear. Discussed with Dr. Smith at [PHI]."
    )
    for bad, match in ((None, "no report"), ("  \n", "empty"), ("FINDINGS:\n", "headers")):
        with pytest.raises(DataError, match=match):
            record_text(Record(id="b", image_path=Path("b.png"), report=bad), deid)
    assert scrub_text("Call  Dr. Smith\n at 10:15.", deid) == "Call [PHI] at [PHI]."
    assert scrub_text("IMPRESSION: ok", deid) == "IMPRESSION: ok"  # no sectioning


def test_text_path_id_names_rules_sectioning_and_config():
    assert RULES_VERSION in TEXT_PATH_VERSION and SECTIONING_VERSION in TEXT_PATH_VERSION
    on = text_path_id(DeidConfig())
    assert on["version"] == TEXT_PATH_VERSION and on["deid"]["backend"] == "rules"
    assert on == text_path_id(DeidConfig(kinds=tuple(reversed(DeidConfig().kinds))))
    assert text_path_id(DeidConfig(kinds=("NAME",)))["hash"] != on["hash"]
    off = text_path_id(DeidConfig(enabled=False))
    assert off["deid"] == "off" and off["hash"] != on["hash"]
    assert off == text_path_id(DeidConfig(enabled=False, kinds=("NAME",)))
    assert len(on["hash"]) == 12 and json.loads(json.dumps(on)) == on


def test_training_warns_once_about_shards_of_another_text_path(layouts, tmp_path, caplog):
    from medtrain.train.loop import note_text_path

    root = layouts["manifest"]
    prepare_shards(
        source="manifest",
        root=root,
        out=tmp_path / "s",
        cfg=ShardConfig(shard_size=64, image_size=64),
        deid=DeidConfig(kinds=("NAME", "DATE")),
    )
    data = DataConfig(
        source="manifest", root=str(root), format="shards", shards=str(tmp_path / "s")
    )
    with caplog.at_level(logging.WARNING, logger="medtrain.train.loop"):
        note_text_path(data)
    (warning,) = caplog.records
    msg = warning.getMessage()
    assert "(2 kinds)" in msg and f"({len(DeidConfig().kinds)} kinds)" in msg
    caplog.clear()
    same = DataConfig(
        source="manifest",
        root=str(root),
        format="shards",
        shards=str(tmp_path / "s"),
        deid=DeidConfig(kinds=("DATE", "NAME")),
    )
    with caplog.at_level(logging.WARNING, logger="medtrain.train.loop"):
        note_text_path(same)  # the shards' own text path: nothing to say
        assert caplog.records == []
        note_text_path(DataConfig(deid=DeidConfig(enabled=False)))
    (off,) = caplog.records
    assert "NOT de-identified" in off.getMessage()


# ----------------------------------------------------- no second path from report to text
DEID_CALLS = {"deidentify", "deidentify_batch", "find_phi"}
SECTIONER_CALLS = {"section_and_clean", "extract_sections", "split_final_report", "clean_text"}
GONE = {"training_text", "deidentified_training_text"}
ALLOWED = {"data/text.py", "data/deid.py", "data/reports.py"}  # the path, and its two halves


def second_paths(source: str) -> list[str]:
    """Imports or calls of the de-identifier / sectioner (and the removed names) in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [a.name for a in node.names if a.name in DEID_CALLS | SECTIONER_CALLS | GONE]
        elif isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in DEID_CALLS | SECTIONER_CALLS | GONE:
                found.append(name)
        elif isinstance(node, ast.FunctionDef) and node.name in GONE:
            found.append(f"def {node.name}")
    return found


def test_second_path_detector_works():
    assert second_paths("from medtrain.data.deid import deidentify\ndeidentify(x)") == [
        "deidentify",
        "deidentify",
    ]
    assert second_paths("import medtrain.data.reports as r\nr.section_and_clean(t)") == [
        "section_and_clean"
    ]
    assert second_paths("from medtrain.data.text import record_text\nrecord_text(r, d)") == []


def test_no_module_but_text_py_turns_reports_into_text():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        found = second_paths(path.read_text(encoding="utf-8"))
        if rel in ALLOWED:
            found = [f for f in found if f in GONE or f.startswith("def ")]
        if found:
            offenders[rel] = found
    assert offenders == {}
    text_py = (PACKAGE / "data" / "text.py").read_text(encoding="utf-8")
    assert {"deidentify", "section_and_clean"} <= set(second_paths(text_py))


def test_prepare_cli_records_deid_in_the_manifest_and_refuses_mixing(layouts, tmp_path, capsys):
    from medtrain.cli import main

    root = layouts["manifest"]
    common = ["data", "prepare", "--source", "manifest", "--root", str(root), "--split", "all"]
    assert main([*common, "--out", str(tmp_path / "on"), "--image-size", "64"]) == 0
    on = json.loads((tmp_path / "on" / "manifest.json").read_text())["text_path"]
    assert on == text_path_id(DeidConfig())
    off_args = [*common, "--out", str(tmp_path / "off"), "--image-size", "64", "--no-deid"]
    assert main(off_args) == 0
    assert "de-identification is OFF" in capsys.readouterr().err
    off = json.loads((tmp_path / "off" / "manifest.json").read_text())["text_path"]
    assert off["deid"] == "off"
    # Adding to the de-identified shards without de-identification is refused.
    mixed = [*common, "--out", str(tmp_path / "on"), "--image-size", "64", "--no-deid"]
    assert main(mixed) == 2
    assert "text path" in capsys.readouterr().err
