"""Questions and answers about what the phantom draws (shared by the vqa-rad and slake layouts).

`study_questions(study)` draws from `study.rng` (the layout-extras stream), so one (seed, index)
gives the same questions in both layouts. Per image: closed (yes/no) questions balanced between
present and absent findings (about as many "yes" as "no"), and open questions whose answers
follow the drawn findings (side, location, size, device, count), in varied templates; a
paraphrase (same answer, another template) for some. Answers are plain lowercase words; counts
are digits. Hedged findings are drawn (fainter) and answered "yes". AP/PA is not drawn
differently, so no question asks it; the plane answer is "frontal" (every image is frontal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtrain.synth.phantom import Finding

DEVICE_NAMES = {
    "ett": "endotracheal tube",
    "cvc": "central venous catheter",
    "pacemaker": "pacemaker",
}
LUNG_KINDS = ("consolidation", "effusion", "pneumothorax", "nodule", "edema", "atelectasis")


@dataclass(frozen=True, slots=True, kw_only=True)
class QA:
    """One question about one image.

    question_type: VQA-RAD's (PRES, POS, SIZE, ABN, ORGAN, PLANE, MODALITY, COUNT)
    content_type:  SLAKE's (Abnormality, Position, Size, Organ, Plane, Modality, Quantity)
    location:      SLAKE's organ location (Lung, Heart, Chest)
    paraphrase:    a rewording of the question before it (VQA-RAD phrase_type "para")
    """

    question: str
    answer: str
    answer_type: str  # CLOSED | OPEN
    question_type: str
    content_type: str
    location: str
    paraphrase: bool = False


# closed questions: key -> (templates, question_type, content_type, location)
CLOSED: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "effusion": (
        (
            "is there a pleural effusion?",
            "is there fluid in the pleural space?",
            "does the patient have a pleural effusion?",
            "are the costophrenic angles blunted?",
        ),
        "PRES",
        "Abnormality",
        "Lung",
    ),
    "cardiomegaly": (
        ("is the heart enlarged?", "is there cardiomegaly?", "is the cardiac silhouette enlarged?"),
        "SIZE",
        "Size",
        "Heart",
    ),
    "pneumothorax": (
        (
            "is there a pneumothorax?",
            "is there free air in the pleural space?",
            "does this image show a pneumothorax?",
        ),
        "PRES",
        "Abnormality",
        "Lung",
    ),
    "device": (
        (
            "is there a medical device?",
            "is there a tube or line?",
            "are any support devices present?",
        ),
        "PRES",
        "Abnormality",
        "Chest",
    ),
    "pneumonia": (
        (
            "is there pneumonia?",
            "does this image show pneumonia?",
            "is there an infectious consolidation?",
        ),
        "PRES",
        "Abnormality",
        "Lung",
    ),
    "consolidation": (
        ("is there a consolidation?", "is there an airspace opacity?", "is any lobe consolidated?"),
        "PRES",
        "Abnormality",
        "Lung",
    ),
    "nodule": (
        (
            "is there a lung nodule?",
            "is there a nodule in the lungs?",
            "is a pulmonary nodule seen?",
        ),
        "PRES",
        "Abnormality",
        "Lung",
    ),
    "edema": (
        ("is there pulmonary edema?", "are there signs of pulmonary edema?"),
        "PRES",
        "Abnormality",
        "Lung",
    ),
    "normal": (
        ("are the lungs normal?", "is the lung normal?", "do the lungs look healthy?"),
        "ABN",
        "Abnormality",
        "Lung",
    ),
}


def _closed_truth(findings: list[Finding]) -> dict[str, bool]:
    kinds = {f.kind for f in findings}
    return {
        "effusion": "effusion" in kinds,
        "cardiomegaly": "cardiomegaly" in kinds,
        "pneumothorax": "pneumothorax" in kinds,
        "device": "device" in kinds,
        "pneumonia": any(f.kind == "consolidation" and f.pneumonia for f in findings),
        "consolidation": "consolidation" in kinds,
        "nodule": "nodule" in kinds,
        "edema": "edema" in kinds,
        "normal": not kinds & set(LUNG_KINDS),
    }


def _open(findings: list[Finding]) -> list[tuple[tuple[str, ...], str, str, str, str]]:
    """Open candidates: (templates, answer, question_type, content_type, location)."""
    by = {}
    for f in findings:
        by.setdefault(f.kind, []).append(f)
    out = []
    if "effusion" in by:
        f = by["effusion"][0]
        out.append(
            (
                (
                    "which side is the effusion on?",
                    "where is the pleural effusion?",
                    "on which side is the pleural fluid?",
                ),
                f.side,
                "POS",
                "Position",
                "Lung",
            )
        )
        out.append(
            (
                ("how large is the effusion?", "what is the size of the pleural effusion?"),
                f.severity,
                "SIZE",
                "Size",
                "Lung",
            )
        )
    if "pneumothorax" in by:
        f = by["pneumothorax"][0]
        out.append(
            (
                ("which side is the pneumothorax on?", "where is the pneumothorax?"),
                f.side,
                "POS",
                "Position",
                "Lung",
            )
        )
    if "consolidation" in by:
        f = by["consolidation"][0]
        out.append(
            (
                (
                    "where is the opacity?",
                    "where is the consolidation located?",
                    "which part of the lung is consolidated?",
                ),
                f"{f.side} {f.zone} lung",
                "POS",
                "Position",
                "Lung",
            )
        )
    if "nodule" in by:
        f = by["nodule"][0]
        out.append(
            (
                ("where is the nodule?", "in which part of the lung is the nodule?"),
                f"{f.side} {f.zone} lung",
                "POS",
                "Position",
                "Lung",
            )
        )
    devices = by.get("device", [])
    if len(devices) == 1:
        out.append(
            (
                (
                    "what device is present?",
                    "what kind of tube or line is seen?",
                    "which support device is visible?",
                ),
                DEVICE_NAMES[devices[0].device],
                "ABN",
                "Abnormality",
                "Chest",
            )
        )
    if devices:
        out.append(
            (
                ("how many devices are there?", "how many tubes or lines are present?"),
                str(len(devices)),
                "COUNT",
                "Quantity",
                "Chest",
            )
        )
    abnormal = [f for f in findings if f.kind != "device"]
    if len(abnormal) == 1:
        name = {"effusion": "pleural effusion", "consolidation": "consolidation"}.get(
            abnormal[0].kind, abnormal[0].kind
        )
        if abnormal[0].kind == "consolidation" and abnormal[0].pneumonia:
            name = "pneumonia"
        out.append(
            (
                ("what is abnormal in this image?", "what is the main finding?"),
                name,
                "ABN",
                "Abnormality",
                "Chest",
            )
        )
    return out


GENERAL = (  # asked of a few images: constant answers
    (("what organ system is shown?", "which organ is imaged?"), "chest", "ORGAN", "Organ", "Chest"),
    (("what is the imaging modality?", "how was this image taken?"), "x-ray", "MODALITY",
     "Modality", "Chest"),
    (("in what plane is this image?", "what view is this?"), "frontal", "PLANE", "Plane", "Chest"),
)  # fmt: skip


def study_questions(findings: list[Finding], rng: np.random.Generator) -> list[QA]:
    """The questions about one frontal image (a fixed number of draws per candidate)."""
    truth = _closed_truth(findings)
    keys = list(CLOSED)
    yes = [k for k in keys if truth[k]]
    no = [k for k in keys if not truth[k]]
    order_yes = rng.permutation(len(yes)).tolist()
    order_no = rng.permutation(len(no)).tolist()
    n_yes = min(len(yes), 2)
    n_no = max(n_yes, 1)
    chosen = [yes[i] for i in order_yes[:n_yes]] + [no[i] for i in order_no[:n_no]]
    out: list[QA] = []

    def add(templates, answer, qtype, ctype, loc, answer_type) -> None:
        t = rng.permutation(len(templates)).tolist()
        para = bool(rng.random() < 0.3) and len(templates) > 1
        out.append(QA(question=templates[t[0]], answer=answer, answer_type=answer_type,
                      question_type=qtype, content_type=ctype, location=loc))  # fmt: skip
        if para:
            out.append(QA(question=templates[t[1]], answer=answer, answer_type=answer_type,
                          question_type=qtype, content_type=ctype, location=loc,
                          paraphrase=True))  # fmt: skip

    for k in chosen:
        templates, qtype, ctype, loc = CLOSED[k]
        add(templates, "yes" if truth[k] else "no", qtype, ctype, loc, "CLOSED")
    opens = _open(findings)
    order = rng.permutation(len(opens)).tolist()
    for i in order[:2]:
        add(*opens[i], "OPEN")
    g = int(rng.integers(len(GENERAL) * 4))  # one image in four gets a general question
    if g < len(GENERAL):
        add(*GENERAL[g], "OPEN")
    return out


# A few questions in Chinese (SLAKE ships both languages; readers keep q_lang "en").
ZH_CLOSED = {
    "effusion": "图中有胸腔积液吗？",
    "cardiomegaly": "心脏是否增大？",
    "pneumothorax": "有气胸吗？",
    "device": "图中有医疗器械吗？",
}


def zh_questions(findings: list[Finding], rng: np.random.Generator) -> list[QA]:
    """One closed Chinese question for half the images (answers 是 / 否)."""
    key = list(ZH_CLOSED)[int(rng.integers(len(ZH_CLOSED) * 2)) // 2]
    if rng.random() >= 0.5:
        return []
    present = _closed_truth(findings)[key]
    _, qtype, ctype, loc = CLOSED[key]
    return [QA(question=ZH_CLOSED[key], answer="是" if present else "否", answer_type="CLOSED",
               question_type=qtype, content_type=ctype, location=loc)]  # fmt: skip
