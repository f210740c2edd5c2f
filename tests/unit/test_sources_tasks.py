"""Readers of the downstream-task sources (rsna-pneumonia, vqa-rad, slake) on hand-made bad
input, the MIMIC label-value check, and `medtrain data preview --json` on each task source."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtrain.cli import main
from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.sources import READER_OPTIONS, REPORTLESS_SOURCES, SOURCES, open_source
from medtrain.data.sources.mimic_cxr import iter_mimic_cxr
from medtrain.data.sources.rsna import iter_rsna
from medtrain.data.sources.slake import iter_slake
from medtrain.data.sources.vqa_rad import JSON_NAME, iter_vqa_rad
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate


def _jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(path)


def test_registry():
    assert set(REPORTLESS_SOURCES) == {"rsna-pneumonia", "vqa-rad", "slake"} <= set(SOURCES)
    for name in REPORTLESS_SOURCES:
        assert READER_OPTIONS[name] == ("images_root",)


# --- VQA-RAD --------------------------------------------------------------------------------
def _entry(qid, image="synpic1.jpg", **kw) -> dict:
    return {"qid": qid, "image_name": image, "question": "is there an effusion?", "answer": "yes",
            "answer_type": "CLOSED", "phrase_type": "freeform", **kw}  # fmt: skip


def test_vqa_rad_bad_entries_are_counted_skips(tmp_path):
    root = tmp_path / "vqa"
    _jpg(root / "VQA_RAD Image Folder" / "synpic1.jpg")
    entries = [
        _entry(1, extra_key="ignored", question_relation="NULL"),  # unknown keys: fine
        {k: v for k, v in _entry(2).items() if k != "answer"},  # missing key
        _entry(3, image="synpic404.jpg"),  # missing image
        _entry(4, answer=2, answer_type="open "),  # int answer, lowercase type with a space
        _entry(5, answer_type="CLOSED ", phrase_type="test_para"),
        _entry(6, answer_type="yes/no"),  # unknown answer type
        _entry(4),  # repeated qid
        _entry(7, image="../outside.jpg"),
        "not an object",
        _entry(8, answer=3.0),
    ]
    (root / JSON_NAME).write_text(json.dumps(entries))
    skipped: list[tuple[str, str]] = []
    records = list(iter_vqa_rad(root, skipped=skipped))
    assert [r.id for r in records] == ["1", "4", "5", "8"]
    r4, r5 = records[1], records[2]
    assert (r4.answer, r4.answer_type) == ("2", "OPEN") and records[3].answer == "3"
    assert (r5.answer_type, r5.split) == ("CLOSED", "test")
    assert records[0].split in ("train", "validate") and records[0].subject_id == "synpic1.jpg"
    assert records[0].report is None and records[0].question == "is there an effusion?"
    reasons = dict(skipped)
    assert len(skipped) == 6
    assert "missing key(s) ['answer']" in reasons[f"{JSON_NAME}[1]"]
    assert reasons["3"].startswith("missing image")
    assert "unknown answer_type 'yes/no'" in reasons[f"{JSON_NAME}[5]"]
    assert reasons["4"].startswith("repeated qid")
    assert "leaves" in reasons["7"]
    assert "not an object" in reasons[f"{JSON_NAME}[8]"]
    # the JSON file itself as root, and images/ beside it
    shutil.move(root / "VQA_RAD Image Folder", root / "images")
    assert [r.id for r in iter_vqa_rad(root / JSON_NAME)] == ["1", "4", "5", "8"]


def test_vqa_rad_file_of_the_wrong_shape_is_an_error(tmp_path):
    (tmp_path / JSON_NAME).write_text(json.dumps({"questions": [_entry(1)]}))
    with pytest.raises(DataError, match="expected a JSON list") as err:
        next(iter_vqa_rad(tmp_path))
    assert JSON_NAME in str(err.value)
    (tmp_path / JSON_NAME).write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        next(iter_vqa_rad(tmp_path))
    with pytest.raises(DataError, match="not found"):
        next(iter_vqa_rad(tmp_path / "nowhere"))


# --- SLAKE ----------------------------------------------------------------------------------
def _slake(qid, lang="en", img="xmlab1/source.jpg", **kw) -> dict:
    entry = {"img_id": 1, "img_name": img, "question": "which organ?", "answer": "Lung"}
    return entry | {"q_lang": lang, "answer_type": "OPEN", "qid": qid, "base_type": "vqa", **kw}


def test_slake_keeps_english_and_skips_bad_entries(tmp_path, caplog):
    _jpg(tmp_path / "imgs" / "xmlab1" / "source.jpg")
    files = {
        "train.json": [_slake(1), _slake(2, lang="zh", question="哪个器官？"), _slake(3, img="y")],
        "validate.json": [_slake(4), {k: v for k, v in _slake(5).items() if k != "q_lang"}],
        "test.json": [_slake(6, answer_type="closed")],
    }  # fmt: skip
    for name, entries in files.items():
        (tmp_path / name).write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    skipped: list[tuple[str, str]] = []
    with caplog.at_level(logging.INFO, logger="medtrain.data.sources.slake"):
        records = list(iter_slake(tmp_path, skipped=skipped))
    assert [(r.id, r.split) for r in records] == [("1", "train"), ("4", "validate"), ("6", "test")]
    # one INFO line per file counts the filtered non-English questions
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "SLAKE train.json: 1 non-English questions filtered",
        "SLAKE validate.json: 0 non-English questions filtered",
        "SLAKE test.json: 0 non-English questions filtered",
    ]
    assert records[2].answer_type == "CLOSED" and records[0].answer == "Lung"
    # the Chinese question is filtered, not counted as skipped
    assert [s[0] for s in skipped] == ["3", "validate.json[1]"]
    assert skipped[0][1].startswith("missing image") and "q_lang" in skipped[1][1]
    assert [r.id for r in iter_slake(tmp_path, splits=["test"])] == ["6"]
    (tmp_path / "test.json").write_text('{"0": []}')
    with pytest.raises(DataError, match="test.json"):
        list(iter_slake(tmp_path))
    (tmp_path / "test.json").unlink()
    with pytest.raises(DataError, match="SLAKE file not found.*test.json"):
        list(iter_slake(tmp_path))


# --- RSNA -----------------------------------------------------------------------------------
HEADER = "patientId,x,y,width,height,Target\n"


def test_rsna_rows_group_by_patient_and_bad_rows_skip_it(tmp_path):
    for pid in ("p1", "p2", "p3", "p4", "p5", "p6", "p7"):
        path = tmp_path / "stage_2_train_images" / f"{pid}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"readers do not decode pixels")
    rows = [
        "p1,,,,,0",
        "p2,10,20,30,40,1",
        "p2,50.5,60,10,12,1",  # several rows: one record, two boxes
        "p3,1,2,3,4,2",  # Target not 0/1
        "p4,,,,,0,extra",  # malformed: too many cells
        "p5,,,,,1",  # Target 1 without a box
        "p6,,,,,0",
        "p6,1,2,3,4,1",  # both targets
        "p8,,,,,0",  # no image
        "p7,,,,,yes",
    ]
    (tmp_path / "stage_2_train_labels.csv").write_text(HEADER + "\n".join(rows) + "\n")
    skipped: list[tuple[str, str]] = []
    records = {r.id: r for r in iter_rsna(tmp_path, skipped=skipped)}
    assert set(records) == {"p1", "p2"}
    assert records["p1"].labels == {"Pneumonia": 0.0} and records["p1"].boxes == ()
    assert records["p2"].labels == {"Pneumonia": 1.0}
    assert records["p2"].boxes == ((10.0, 20.0, 30.0, 40.0), (50.5, 60.0, 10.0, 12.0))
    assert records["p2"].image_kind == "dicom" and records["p2"].subject_id == "p2"
    reasons = dict(skipped)
    assert len(skipped) == 6
    assert reasons["p3"] == "Target '2' is not 0 or 1 at stage_2_train_labels.csv line 5"
    assert reasons["p4"].startswith("malformed row") and reasons["p4"].endswith("line 6")
    assert "without a numeric box" in reasons["p5"]
    assert "both Target 0 and Target 1" in reasons["p6"]
    assert reasons["p8"].startswith("missing image")
    assert "'yes' is not 0 or 1" in reasons["p7"]
    (tmp_path / "stage_2_train_labels.csv").write_text("patientId,Target\np1,0\n")
    with pytest.raises(DataError, match="missing columns"):
        next(iter_rsna(tmp_path))


# --- MIMIC label values ---------------------------------------------------------------------
def _gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)


@pytest.mark.parametrize("value", ["2", "yes", "0.5"])
def test_mimic_label_outside_the_four_values_skips_naming_column_and_value(tmp_path, value):
    _gz(
        tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz",
        "dicom_id,subject_id,study_id,ViewPosition\nd0,10000000,50,PA\nd1,10000000,51,PA\n",
    )
    _gz(tmp_path / "mimic-cxr-2.0.0-split.csv.gz",
        "dicom_id,study_id,subject_id,split\nd0,50,1,train\nd1,51,1,train\n")  # fmt: skip
    cells = [""] * len(CHEXPERT_LABELS)
    good = ",".join(["1", "-1.0", "0"] + cells[3:])
    cells[CHEXPERT_LABELS.index("Edema")] = value
    labels = "subject_id,study_id," + ",".join(CHEXPERT_LABELS) + "\n"
    labels += f"1,50,{','.join(cells)}\n1,51,{good}\n"
    _gz(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", labels)
    skipped: list[tuple[str, str]] = []
    records = list(iter_mimic_cxr(tmp_path, check_files=False, skipped=skipped))
    assert [r.id for r in records] == ["d1"]
    assert records[0].labels["Atelectasis"] == 1.0 and records[0].labels["Cardiomegaly"] == -1.0
    ((item, reason),) = skipped
    assert item == "d0" and f"bad label value {value!r}" in reason and "'Edema'" in reason


# --- preview --------------------------------------------------------------------------------
@pytest.mark.parametrize("source", REPORTLESS_SOURCES)
def test_preview_json_shows_task_fields(tmp_path, capsys, source):
    root = tmp_path / source
    generate(SynthConfig(layout=source, n=12, seed=4, image_size=64), root)
    capsys.readouterr()
    argv = ["data", "preview", "--source", source, "--root", str(root), "--json", "--n", "50"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = list(open_source(source, root, splits=["train"]))
    assert [r["id"] for r in rows] == [r.id for r in records][:50]
    for row, rec in zip(rows, records, strict=False):
        assert row["text"] is None and row["image"]["height"] == row["image"]["width"]
        if source == "rsna-pneumonia":
            assert row["labels"] == rec.labels and row["boxes"] == [list(b) for b in rec.boxes]
        else:
            assert (row["question"], row["answer"], row["answer_type"]) == (
                rec.question, rec.answer, rec.answer_type)  # fmt: skip
            assert row["answer_type"] in ("CLOSED", "OPEN") and row["labels"] == {}
