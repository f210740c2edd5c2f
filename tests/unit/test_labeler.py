"""The rule-based labeler against the synthetic ground truth and a hand-written sentence set."""

from __future__ import annotations

import pytest

from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.eval.metrics.labeler import ce_metrics, ce_report, ce_scores, label_report

P, N, U = 1.0, 0.0, -1.0
AT, CM, CO, ED = "Atelectasis", "Cardiomegaly", "Consolidation", "Edema"
ECM, FX, LL, LO = "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity"
NF, PE, PO, PN = "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia"
PTX, SD = "Pneumothorax", "Support Devices"

# Written from general radiology language (not from synth/reports.py): text -> expected labels
# for the labels named (the others are not checked; None = not mentioned).
HAND: list[tuple[str, dict[str, float | None]]] = [
    ("No pleural effusion.", {PE: N}),
    ("No effusion, pneumothorax, or consolidation.", {PE: N, PTX: N, CO: N}),
    ("There is no evidence of pneumothorax.", {PTX: N}),
    ("Negative for pneumothorax.", {PTX: N}),
    ("The lungs are free of consolidation.", {CO: N}),
    ("Small left pleural effusion.", {PE: P, PTX: None}),
    ("Blunting of the left costophrenic angle.", {PE: P}),
    ("Possible small right effusion.", {PE: U}),
    ("A small pneumothorax cannot be excluded.", {PTX: U}),
    ("Pneumonia cannot be ruled out.", {PN: U}),
    ("Findings may represent atelectasis.", {AT: U}),
    ("Questionable left lower lobe opacity.", {LO: U}),
    ("Opacity suggestive of pneumonia.", {PN: U}),
    ("Right basilar opacity concerning for pneumonia.", {PN: U}),
    ("The heart is enlarged.", {CM: P, ECM: P}),
    ("Mild enlargement of the cardiac silhouette.", {CM: P}),
    ("Heart size is normal.", {CM: N}),
    ("The cardiac silhouette is within normal limits.", {CM: N}),
    ("The heart is not enlarged.", {CM: N}),
    ("Stable cardiomegaly.", {CM: P}),
    ("No change in moderate cardiomegaly.", {CM: P}),
    ("Unchanged small bilateral pleural effusions.", {PE: P}),
    ("Interval increase in the right pleural effusion.", {PE: P}),
    ("Compared to prior, the right effusion has resolved.", {PE: N}),
    ("The previously seen pneumothorax has resolved.", {PTX: N}),
    ("Resolution of the left lower lobe consolidation.", {CO: N}),
    ("No new consolidation.", {CO: N}),
    ("No new focal opacity.", {LO: N}),
    ("Lungs are clear.", {CO: N, LO: N}),
    ("The lungs are clear bilaterally.", {CO: N, LO: N}),
    ("Mediastinal contours are within normal limits.", {ECM: N}),
    ("The mediastinum is widened.", {ECM: P}),
    ("Widening of the superior mediastinum.", {ECM: P}),
    ("Mild pulmonary vascular congestion.", {ED: P}),
    ("Moderate interstitial pulmonary edema.", {ED: P, LO: P}),
    ("No pulmonary edema.", {ED: N}),
    ("Patchy airspace consolidation in the right lower lobe.", {CO: P, LO: P}),
    ("Right lower lobe pneumonia.", {PN: P, LO: P}),
    ("Bibasilar atelectasis.", {AT: P}),
    ("Subsegmental atelectasis at the left base, improved.", {AT: P}),
    ("A 9 mm nodule in the right upper lobe.", {LL: P}),
    ("Spiculated mass in the left upper lobe.", {LL: P}),
    ("No suspicious pulmonary nodules.", {LL: N}),
    ("Acute fracture of the left seventh rib.", {FX: P}),
    ("No acute displaced rib fracture.", {FX: N}),
    ("Healed right rib fractures.", {FX: P}),
    ("Endotracheal tube terminates 4 cm above the carina.", {SD: P}),
    ("Left subclavian PICC line tip in the distal SVC.", {SD: P}),
    ("Nasogastric tube courses below the diaphragm.", {SD: P}),
    ("The endotracheal tube has been removed.", {SD: N}),
    ("Interval removal of the right chest tube.", {SD: N}),
    ("Dual-chamber pacemaker with leads in the right atrium and ventricle.", {SD: P}),
    ("No Kerley B lines.", {SD: None}),
    (
        "A visible pleural line is seen at the apex consistent with pneumothorax.",
        {PTX: P, SD: None},
    ),
    ("Right apical pneumothorax is no longer seen.", {PTX: N}),
    ("Left pleural thickening.", {PO: P}),
    ("No pneumothorax, but there is a small left effusion.", {PTX: N, PE: P}),
    ("No focal consolidation is seen and the heart is enlarged.", {CO: N, CM: P}),
    ("No findings to suggest pneumonia.", {PN: N}),
    ("There is no evidence of edema or effusion.", {ED: N, PE: N}),
    ("Atelectasis versus pneumonia at the left base.", {AT: U, PN: U}),
    ("Heart size and mediastinal contours are normal. Lungs are clear.", {CM: N, ECM: N, NF: P}),
    ("No acute cardiopulmonary process.", {NF: P}),
    ("Normal chest radiograph.", {NF: P}),
    ("Endotracheal tube in standard position. Otherwise normal.", {SD: P, NF: P}),
    ("Small right effusion. Otherwise no acute abnormality.", {PE: P, NF: None}),
    ("INDICATION: evaluate for pneumonia. FINDINGS: Lungs are clear.", {PN: None, CO: N}),
    ("Pleural effusion is not excluded.", {PE: U}),
    ("There is likely a small left pleural effusion.", {PE: U}),
    ("Decreased but persistent right pleural effusion.", {PE: P}),
    ("Improving left lower lobe pneumonia.", {PN: P}),
    ("No pericardial effusion.", {PE: None}),
    ("Small bilateral effusions have decreased in size.", {PE: P}),
    ("There has been interval resolution of the left pneumothorax.", {PTX: N}),
    ("The left chest tube has been removed. No pneumothorax.", {SD: N, PTX: N}),
    ("3 cm mass in the left upper lobe is again seen.", {LL: P}),
    ("Tiny left apical pneumothorax, new since prior.", {PTX: P}),
    ("Large right effusion with adjacent compressive atelectasis.", {PE: P, AT: P}),
    ("No focal airspace disease.", {LO: N}),
    # "and" + article / size / severity word starts a new statement; a bare "and" or "or" list
    # keeps the negation
    ("No pneumothorax and a large left effusion.", {PTX: N, PE: P}),
    ("No effusion and moderate cardiomegaly.", {PE: N, CM: P}),
    ("No focal consolidation and new small right effusion.", {CO: N, PE: P}),
    ("No pneumothorax and no effusion.", {PTX: N, PE: N}),
    ("No effusion or pneumothorax.", {PE: N, PTX: N}),
    ("No pneumothorax and effusion.", {PTX: N, PE: N}),
]
HAND_THRESHOLD = 0.95  # measured 1.00 on this set (see the module's report in the PR)
SYNTH_EXACT_THRESHOLD = 0.97  # measured on 300 synthetic reports


def test_hand_written_set_accuracy() -> None:
    assert len(HAND) >= 60
    right, total, wrong = 0, 0, []
    for text, expected in HAND:
        got = label_report(text)
        for name, value in expected.items():
            total += 1
            if got[name] == value:
                right += 1
            else:
                wrong.append((text, name, value, got[name]))
    acc = right / total
    assert acc >= HAND_THRESHOLD, f"accuracy {acc:.3f}; wrong: {wrong}"


def _synth_reports(n: int):
    from medtrain.synth.config import SynthConfig
    from medtrain.synth.study import StudyStyle, studies

    cfg = SynthConfig(n=n, seed=7, image_size=32)
    for style in (
        StudyStyle(placeholder="___"),
        StudyStyle(placeholder="XXXX", sections="openi", text="assembled", views=False),
    ):
        yield from ((s.text, s.labels) for s in studies(cfg, style))


def test_synthetic_ground_truth_agreement() -> None:
    exact = {n: 0 for n in CHEXPERT_LABELS}
    loose = dict(exact)  # None and 0.0 both read as negative
    count = 0
    for text, truth in _synth_reports(150):
        got = label_report(text)
        count += 1
        for n in CHEXPERT_LABELS:
            exact[n] += got[n] == truth[n]
            loose[n] += (got[n] or 0.0) == (truth[n] or 0.0)
    mean_exact = sum(exact.values()) / (count * len(CHEXPERT_LABELS))
    mean_loose = sum(loose.values()) / (count * len(CHEXPERT_LABELS))
    per = {n: exact[n] / count for n in CHEXPERT_LABELS}
    assert mean_exact >= SYNTH_EXACT_THRESHOLD, per
    assert mean_loose >= SYNTH_EXACT_THRESHOLD, per
    assert min(per.values()) >= 0.85, per


def test_and_ends_negation_only_before_a_new_statement() -> None:
    """The cases of the hand-written set that hinge on "and", each checked exactly."""
    assert label_report("No pneumothorax and a large left effusion.")[PE] == P
    assert label_report("No pneumothorax and the left effusion is larger.")[PE] == P
    assert label_report("Possible effusion and a small pneumothorax.")[PTX] == P
    for text in ("No pneumothorax and no effusion.", "No pneumothorax and effusion."):
        got = label_report(text)
        assert (got[PTX], got[PE], got[NF]) == (N, N, P), text


def test_no_finding_and_shape() -> None:
    got = label_report("Endotracheal tube in place. No effusion.")
    assert set(got) == set(CHEXPERT_LABELS)
    assert got[NF] == P and got[SD] == P and got[PE] == N and got[CM] is None
    assert label_report("Possible small effusion.")[NF] is None


def test_ce_scores_values_and_left_out() -> None:
    texts = {"a": "Small left effusion. Cardiomegaly.", "b": "No effusion.", "c": "Pneumothorax."}
    preds = {k: label_report(v) for k, v in texts.items()}
    refs = {
        "a": {PE: P, CM: U},  # uncertain counts as negative
        "b": {PE: P},
        "c": {PTX: P},
    }
    m, left_out = ce_scores(preds, refs)
    # predicted positives: a: PE, CM, ECM; c: PTX; No Finding is None for a/c, P for b.
    # tp: a PE, c PTX = 2; fp: a CM, a ECM, b NF = 3; fn: b PE = 1
    assert m["ce/precision"] == pytest.approx(2 / 5)
    assert m["ce/recall"] == pytest.approx(2 / 3)
    assert m["ce/f1"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    assert m[f"ce/{PE}/f1"] == pytest.approx(2 / 3)
    assert m[f"ce/{PTX}/f1"] == 1.0 and m[f"ce/{CM}/f1"] == 0.0 and m[f"ce/{NF}/f1"] == 0.0
    # findings positive on neither side have no per-finding key and are listed instead
    shown = {PE, PTX, CM, ECM, NF}
    assert left_out == [n for n in CHEXPERT_LABELS if n not in shown]
    assert {k for k in m if k.count("/") == 2} == {f"ce/{n}/f1" for n in shown}
    micro, none_out = ce_scores(preds, refs, prefix="x", per_finding=False)
    assert set(micro) == {"x/precision", "x/recall", "x/f1"} and none_out == left_out
    assert micro["x/f1"] == m["ce/f1"]
    with pytest.raises(ValueError, match="1 reports without a prediction"):
        ce_scores({}, {"x": {}})


def test_ce_metrics_labels_both_texts() -> None:
    """ce_metrics reads the reference TEXT with the same labeler as the generated text."""
    preds = {"a": "No pneumothorax and a large left effusion.", "b": "Heart size is normal."}
    refs = {"a": "Large left pleural effusion. No pneumothorax.", "b": "The heart is enlarged."}
    m, left_out = ce_report(preds, refs)
    # a: PE on both sides (tp); b: ref CM + ECM positive (2 fn), pred NF positive (fp)
    assert (m["ce/precision"], m["ce/recall"]) == pytest.approx((1 / 2, 1 / 3))
    assert m[f"ce/{PE}/f1"] == 1.0 and m[f"ce/{CM}/f1"] == 0.0 and m[f"ce/{NF}/f1"] == 0.0
    assert FX in left_out and f"ce/{FX}/f1" not in m and PTX in left_out
    assert ce_metrics(preds, refs) == m
    with pytest.raises(ValueError, match="1 reports without a prediction"):
        ce_metrics({}, {"x": "No effusion."})
