"""Synthetic downstream-task layouts (rsna-pneumonia, vqa-rad, slake): written, read back by
their readers, and checked against what the phantom drew; the pneumonia pattern is learnable."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from medtrain.data.images import read_dicom
from medtrain.data.sources import open_source
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate
from medtrain.synth.layouts import REPORT_LAYOUTS, TASK_LAYOUTS, layout_writer
from medtrain.synth.layouts.rsna import patient_id
from medtrain.synth.phantom import SIDES, ZONE_V, Finding, draw_phantom
from medtrain.synth.study import make_study, sample_findings
from medtrain.synth.vqa import CLOSED

N, SEED, SIZE = 40, 3, 64


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for layout in TASK_LAYOUTS:
        out[layout] = tmp_path_factory.mktemp(layout)
        generate(SynthConfig(layout=layout, n=N, seed=SEED, image_size=SIZE), out[layout])
    return out


def _studies(layout: str) -> list:
    cfg = SynthConfig(layout=layout, n=N, seed=SEED, image_size=SIZE)
    return [make_study(cfg, i, layout_writer(layout).style) for i in range(N)]


def test_registry_separates_task_layouts():
    assert set(TASK_LAYOUTS) == {"rsna-pneumonia", "vqa-rad", "slake"}
    assert not set(TASK_LAYOUTS) & set(REPORT_LAYOUTS)
    for name in TASK_LAYOUTS:
        assert layout_writer(name).reports is False


def test_rsna_targets_and_boxes_follow_the_drawn_pneumonia(roots):
    root = roots["rsna-pneumonia"]
    studies = _studies("rsna-pneumonia")
    by_pid = {patient_id(SEED, s.index, s.ids.split): s for s in studies}
    skipped: list = []
    records = list(open_source("rsna-pneumonia", root, skipped=skipped))
    assert not skipped and len(records) == N and {r.id for r in records} == set(by_pid)
    classes = {}
    with open(root / "stage_2_detailed_class_info.csv", newline="") as f:
        for row in csv.DictReader(f):
            classes.setdefault(row["patientId"], set()).add(row["class"])
    positives = 0
    for rec in records:
        study = by_pid[rec.id]
        assert rec.split == study.ids.split  # ids chosen so the hashed split is the subject's
        pneumonia = [f for f in study.findings if f.kind == "consolidation" and f.pneumonia]
        assert rec.labels == {"Pneumonia": 1.0 if pneumonia else 0.0}
        assert rec.image_kind == "dicom" and rec.report is None
        display, _ = read_dicom(rec.image_path)  # (S, S) in [0, 1]
        pixels = np.round(display * 255.0).astype(np.uint8)
        assert np.abs(pixels.astype(int) - study.images[0].draw()).max() <= 1
        if not pneumonia:
            assert rec.boxes == ()
            want = "Normal" if not study.findings else "No Lung Opacity / Not Normal"
            assert classes[rec.id] == {want}
            continue
        positives += 1
        assert classes[rec.id] == {"Lung Opacity"} and len(rec.boxes) == len(pneumonia)
        # the box holds the drawn opacity: the image differs from the same draw without it
        rng = np.random.default_rng(study.images[0].seed)
        others = [f for f in study.findings if f.kind != "consolidation"]
        plain = draw_phantom(rng, others, SIZE).astype(np.float32)
        diff = np.abs(pixels.astype(np.float32) - plain)
        (x, y, w, h) = (int(v) for v in rec.boxes[0])
        assert x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE and w >= 4 and h >= 4
        inside = np.zeros_like(diff, bool)
        inside[y : y + h, x : x + w] = True
        assert diff[inside].mean() > 15 and diff[inside].mean() > 8 * diff[~inside].mean()
        lung_side = "right" if x + w / 2 < SIZE / 2 else "left"  # patient right = image left
        assert lung_side == pneumonia[0].side
    assert positives >= 2, positives


def _truth(findings: list[Finding]) -> dict[str, bool]:
    """Closed-question truth computed here, from the findings (not by synth/vqa.py)."""
    kinds = {f.kind for f in findings}
    lung = {"consolidation", "effusion", "pneumothorax", "nodule", "edema", "atelectasis"}
    return {
        "effusion": "effusion" in kinds,
        "cardiomegaly": "cardiomegaly" in kinds,
        "pneumothorax": "pneumothorax" in kinds,
        "device": "device" in kinds,
        "pneumonia": any(f.pneumonia for f in findings if f.kind == "consolidation"),
        "consolidation": "consolidation" in kinds,
        "nodule": "nodule" in kinds,
        "edema": "edema" in kinds,
        "normal": not kinds & lung,
    }


def _check_answers(records, findings_of) -> Counter:
    """Every answer against the image's findings; returns counts of what was checked."""
    template_key = {t: k for k, (ts, *_) in CLOSED.items() for t in ts}
    checked: Counter = Counter()
    for rec in records:
        findings = findings_of(rec)
        by = {}
        for f in findings:
            by.setdefault(f.kind, []).append(f)
        q, a = rec.question, rec.answer
        if q in template_key:
            assert rec.answer_type == "CLOSED"
            assert a == ("yes" if _truth(findings)[template_key[q]] else "no"), (q, a, findings)
            checked["closed"] += 1
        elif "effusion" in q or "pleural fluid" in q:
            f = by["effusion"][0]
            assert a == (f.side if ("side" in q or "where" in q) else f.severity), (q, a)
            checked["effusion"] += 1
        elif "pneumothorax" in q:
            assert a == by["pneumothorax"][0].side
            checked["side"] += 1
        elif "nodule" in q:
            f = by["nodule"][0]
            assert a == f"{f.side} {f.zone} lung"
            checked["location"] += 1
        elif "opacity" in q or "consolidat" in q:
            f = by["consolidation"][0]
            assert a == f"{f.side} {f.zone} lung"
            checked["location"] += 1
        elif q.startswith("how many"):
            assert a == str(len(by["device"]))
            checked["count"] += 1
        elif "device" in q or "tube or line" in q:
            names = {"ett": "endotracheal tube", "cvc": "central venous catheter"}
            assert [a] == [names.get(f.device, f.device) for f in by["device"]]
            checked["device"] += 1
        elif "abnormal" in q or "main finding" in q:
            (f,) = [f for f in findings if f.kind != "device"]
            want = "pneumonia" if f.pneumonia else {"effusion": "pleural effusion"}.get(f.kind)
            assert a == (want or f.kind)
            checked["abnormality"] += 1
        else:
            assert a in ("chest", "x-ray", "frontal"), (q, a)
            checked["general"] += 1
        assert rec.answer_type == ("CLOSED" if a in ("yes", "no") else "OPEN")
    return checked


def test_vqa_rad_answers_follow_the_drawn_findings(roots):
    root = roots["vqa-rad"]
    studies = _studies("vqa-rad")
    skipped: list = []
    records = list(open_source("vqa-rad", root, skipped=skipped))
    assert not skipped and len(records) >= 3 * N

    def index(rec) -> int:
        return (int(rec.study_id.removeprefix("synpic").removesuffix(".jpg")) - 100000) // 1000

    checked = _check_answers(records, lambda r: studies[index(r)].findings)
    assert checked["closed"] > N and checked["location"] + checked["effusion"] + checked["side"]
    for rec in records:
        study = studies[index(rec)]
        assert rec.split == study.ids.split  # test by phrase_type, validate by image hash
        assert rec.subject_id == rec.study_id == Path(rec.image_path).name
        assert (
            np.abs(
                np.asarray(Image.open(rec.image_path), np.float32) - study.images[0].draw()
            ).mean()
            < 3
        )  # JPEG of the drawn image
    raw = json.loads((root / "VQA_RAD Dataset Public.json").read_text())
    assert {e["phrase_type"] for e in raw} >= {"freeform", "para", "test_freeform"}
    assert any(isinstance(e["answer"], int) for e in raw)  # as the public file: numbers
    assert any(e["answer_type"].endswith(" ") for e in raw)  # and "CLOSED " written so
    # balanced: the majority answer is far from every answer, yes and no about even
    answers = Counter(r.answer for r in records)
    assert answers.most_common(1)[0][1] / len(records) < 0.45, answers
    closed = [r.answer for r in records if r.answer_type == "CLOSED"]
    assert 0.35 < closed.count("yes") / len(closed) < 0.65
    assert len({r.question for r in records}) >= 20  # varied templates


def test_slake_matches_vqa_rad_and_drops_chinese(roots):
    root = roots["slake"]
    studies = _studies("slake")
    records = list(open_source("slake", root))
    raw = [e for name in ("train", "validate", "test") for e in json.loads(
        (root / f"{name}.json").read_text(encoding="utf-8"))]  # fmt: skip
    zh = [e for e in raw if e["q_lang"] == "zh"]
    assert zh and len(records) == len(raw) - len(zh)
    assert {e["modality"] for e in raw} == {"X-Ray"} and {e["base_type"] for e in raw} == {"vqa"}

    def index(rec) -> int:
        return int(rec.study_id.split("/")[0].removeprefix("xmlab")) - 1

    _check_answers(records, lambda r: studies[index(r)].findings)
    assert all(r.split == studies[index(r)].ids.split for r in records)
    vqa_rad = list(open_source("vqa-rad", roots["vqa-rad"]))
    assert [(r.id, r.question, r.answer) for r in records] == sorted(
        ((r.id, r.question, r.answer) for r in vqa_rad), key=lambda t: (
            ("train", "validate", "test").index(studies[int(t[0]) // 50].ids.split), int(t[0]))
    )  # fmt: skip


@pytest.mark.parametrize("layout", TASK_LAYOUTS)
def test_task_layouts_are_deterministic(tmp_path, layout):
    def tree(seed: int, name: str) -> dict[str, bytes]:
        out = tmp_path / name
        generate(SynthConfig(layout=layout, n=6, seed=seed, image_size=32), out)
        return {
            p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
        }

    a, b, c = tree(1, "a"), tree(1, "b"), tree(2, "c")
    assert a == b and a != c


def test_images_without_consolidation_keep_their_bytes():
    """The pneumonia pattern changed only consolidation images (digests before the change)."""
    cases = {
        "f97a1d60a63a021c": [],
        "59143608c431ea5f": [
            Finding(kind="nodule", side="left", zone="upper"),
            Finding(kind="device", device="ett"),
            Finding(kind="effusion", side="right", severity="large"),
        ],
        "f6100fd3bd2af8fc": [
            Finding(kind="nodule", side="right", zone="lower"),
            Finding(kind="nodule", side="left", zone="middle"),
            Finding(kind="pneumothorax", side="left", severity="small"),
        ],
    }
    for digest, findings in cases.items():
        img = draw_phantom(np.random.default_rng(5), findings, 64)
        assert hashlib.sha256(img.tobytes()).hexdigest()[:16] == digest


def _window_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """128 px images, half pneumonia and half non-infectious consolidation, random side, zone,
    hedging and other findings; features of a fixed window at the finding's lobe (where a
    reader would look): mean, standard deviation and mean gradient magnitude."""
    r = np.random.default_rng(seed)
    feats, labels = [], []
    for i in range(n):
        side, zone = SIDES[int(r.integers(2))], ("upper", "middle", "lower")[int(r.integers(3))]
        f = Finding(kind="consolidation", side=side, zone=zone, hedged=bool(r.random() < 0.2),
                    pneumonia=i % 2 == 0)  # fmt: skip
        others = [g for g in sample_findings(r) if g.kind != "consolidation"]
        img = draw_phantom(np.random.default_rng([seed, i]), [f, *others], 128).astype(np.float32)
        uc = (-1 if side == "right" else 1) * (0.40 if zone != "middle" else 0.32)
        cx, cy = int((uc + 1) / 2 * 128), int((ZONE_V[zone] + 1) / 2 * 128)
        win = img[cy - 12 : cy + 12, cx - 14 : cx + 14]
        gy, gx = np.gradient(win)
        feats.append([win.mean(), win.std(), np.hypot(gx, gy).mean()])
        labels.append(f.pneumonia)
    return np.asarray(feats), np.asarray(labels)


def test_pneumonia_pattern_is_separable_from_pixels():
    """A logistic regression on three pixel statistics of the lobe window tells infectious from
    non-infectious consolidation on held-out images (measured: 1.0 at 128 px)."""
    xtr, ytr = _window_features(120, 1)
    xte, yte = _window_features(80, 2)
    scale = StandardScaler().fit(xtr)
    clf = LogisticRegression().fit(scale.transform(xtr), ytr)
    acc = clf.score(scale.transform(xte), yte)
    assert acc >= 0.9, acc
    # denser and more heterogeneous (air bronchograms): the raw statistics already differ
    assert xte[yte, 0].mean() > xte[~yte, 0].mean() + 10
    assert xte[yte, 2].mean() > xte[~yte, 2].mean()
