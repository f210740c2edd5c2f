"""One synthetic study, the record every output layout writes: `studies(cfg, style)`.

Study i is a function of (seed, i) and the config: it draws from three streams spawned from
SeedSequence([seed, 1, i]): [report and metadata, frontal image, lateral image]. Its ids
(subject, study id, split) come from `cohort(cfg)`, drawn once from [seed, 0] for all n studies
(subjects have 1-3 studies; the split is assigned by subject).

Layouts differ in how the report is written (the data set's PHI mask, section style, stored
form) and in which draws precede it; `StudyStyle` names those choices. On the report stream the
draws are, in this order (fixed: changing it changes every layout's bytes):
findings -> [frontal view, lateral?] (style.views) -> phi? -> [StudyDate, StudyTime]
(style.acquisition) -> report -> [MIMIC free-text layout] (style.text == "free") -> layout
extras, which a layout draws from `Study.rng` (MIMIC dicom_ids, hospital DICOM header values).
So one (seed, index) gives the same findings, images and ids in every layout; the same view,
lateral and PHI choice in every layout with `views`; and the same labels in layouts with the
same draws before the report (views, no acquisition: r2gen, dicom, manifest). The MIMIC layout
(StudyDate drawn before the report) and Open-I (no view drawn) word and label their reports
differently for the same index: kept so, as reordering would change their bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from medtrain.data.reports import assemble_sections
from medtrain.synth.config import SynthConfig
from medtrain.synth.phantom import FINDING_KINDS, Finding, PixelBox, draw_phantom
from medtrain.synth.phi import strip_phi_markers
from medtrain.synth.reports import RenderedReport, mimic_text, render_report

PREVALENCE = {  # independent per finding kind
    "consolidation": 0.15,
    "effusion": 0.18,
    "cardiomegaly": 0.14,
    "pneumothorax": 0.10,
    "nodule": 0.10,
    "device": 0.18,
    "edema": 0.10,
    "atelectasis": 0.12,
}
EXAM = {"PA": "CHEST (PA AND LAT)", "AP": "CHEST (PORTABLE AP)"}  # study description by view
TEXT_FORMS = ("free", "assembled", "findings")
Spans = list[tuple[int, int, str]]


def sample_findings(rng: np.random.Generator) -> list[Finding]:
    """Independent findings at PREVALENCE; a fixed number of draws per call."""
    hit = rng.random(len(FINDING_KINDS))
    d = rng.random((len(FINDING_KINDS), 4))  # details: side, zone/severity, hedged, extra
    out: list[Finding] = []
    for k, kind in enumerate(FINDING_KINDS):
        if hit[k] >= PREVALENCE[kind]:
            continue
        side = "right" if d[k, 0] < 0.55 else "left"
        zone = "upper" if d[k, 1] < 0.3 else "middle" if d[k, 1] < 0.55 else "lower"
        sev3 = "small" if d[k, 1] < 0.5 else "moderate" if d[k, 1] < 0.85 else "large"
        hedged = bool(d[k, 2] < 0.2)
        if kind == "consolidation":
            pneumonia = bool(d[k, 3] < 0.6)  # infectious pattern (phantom draws it differently)
            out.append(Finding(kind=kind, side=side, zone=zone, hedged=hedged, pneumonia=pneumonia))
        elif kind == "effusion":
            out.append(
                Finding(kind=kind, side=side, severity="small" if hedged else sev3, hedged=hedged)
            )
        elif kind == "cardiomegaly":
            out.append(Finding(kind=kind, severity={"small": "mild"}.get(sev3, sev3)))
        elif kind == "pneumothorax":
            sev = "small" if hedged or d[k, 1] < 0.6 else "moderate"
            out.append(Finding(kind=kind, side=side, severity=sev, hedged=hedged))
        elif kind == "nodule":
            out.append(Finding(kind=kind, side=side, zone=zone))
        elif kind == "device":
            first = "ett" if d[k, 0] < 0.45 else "cvc" if d[k, 0] < 0.8 else "pacemaker"
            out.append(Finding(kind=kind, device=first))
            if d[k, 3] < 0.3:
                second = "cvc" if first != "cvc" else "ett"
                out.append(Finding(kind=kind, device=second))
        elif kind == "edema":
            out.append(Finding(kind=kind, side="bilateral", hedged=bool(d[k, 2] < 0.25)))
        elif kind == "atelectasis":
            out.append(Finding(kind=kind, side=side, zone="lower", hedged=hedged))
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyIds:
    subject_id: int  # 8 digits starting with 1
    study_id: int  # 8 digits starting with 5
    split: str  # train | validate | test, by subject


def cohort(cfg: SynthConfig) -> tuple[list[StudyIds], int]:
    """Ids of the cfg.n studies in file order (a subject's studies are adjacent), and the number
    of subjects. A function of (seed, n, split_fractions)."""
    rng = np.random.default_rng([cfg.seed, 0])
    sizes: list[int] = []
    while sum(sizes) < cfg.n:
        sizes.append(int(rng.integers(1, 4)))
    sizes[-1] -= sum(sizes) - cfg.n
    n_subj = len(sizes)
    subjects = np.sort(10_000_000 + rng.choice(10_000_000, size=n_subj, replace=False)).tolist()
    study_ids = np.sort(50_000_000 + rng.choice(10_000_000, size=cfg.n, replace=False)).tolist()
    order = rng.permutation(n_subj).tolist()
    n_train = round(cfg.split_fractions[0] * n_subj)
    n_val = round(cfg.split_fractions[1] * n_subj)
    split_of = {}
    for rank, j in enumerate(order):
        split_of[j] = (
            "train" if rank < n_train else "validate" if rank < n_train + n_val else "test"
        )
    rows, k = [], 0
    for j, count in enumerate(sizes):
        for _ in range(count):
            rows.append(StudyIds(subject_id=subjects[j], study_id=study_ids[k], split=split_of[j]))
            k += 1
    return rows, n_subj


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyStyle:
    """How a layout writes a study's report, and which draws precede it.

    placeholder: the data set's own PHI mask ("___" MIMIC, "XXXX" Open-I); None: a hospital
                 report with real-looking (marked, ground-truth) PHI instead of masks
    sections:    render_report style: "mimic" (optional EXAMINATION/INDICATION/COMPARISON) or
                 "openi" (COMPARISON and INDICATION always)
    text:        the stored form of Study.text: "free" (MIMIC free text with banner and wrapped
                 lines), "assembled" (the sections joined as the Open-I reader does), "findings"
                 (the FINDINGS body, else IMPRESSION, as R2Gen's annotation.json)
    views:       draw the frontal view (AP for devices, else AP at 25%) and a LATERAL image at
                 cfg.lateral_fraction; False: one PA image, nothing drawn
    acquisition: draw a MIMIC StudyDate (YYYYMMDD, years 2110-2199) and StudyTime
                 (HHMMSS.fff) before the report
    """

    placeholder: str | None
    sections: str = "mimic"
    text: str = "free"
    views: bool = True
    acquisition: bool = False

    def __post_init__(self) -> None:
        if self.sections not in ("mimic", "openi") or self.text not in TEXT_FORMS:
            raise ValueError(f"bad StudyStyle sections/text: {self.sections!r}, {self.text!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyImage:
    """One image of a study; `draw()` is pure (a fresh generator from `seed` on every call)."""

    position: str  # ViewPosition: PA | AP | LATERAL
    seed: np.random.SeedSequence
    findings: tuple[Finding, ...]
    size: int

    def draw(self, boxes: list[PixelBox] | None = None) -> np.ndarray:
        """(size, size) uint8 phantom, bright = dense; `boxes` (a list) receives the pixel boxes
        of the drawn consolidations (draw_phantom)."""
        view = "lateral" if self.position == "LATERAL" else "frontal"
        rng = np.random.default_rng(self.seed)
        return draw_phantom(rng, list(self.findings), self.size, view=view, boxes=boxes)


@dataclass(frozen=True, kw_only=True, slots=True)
class Study:
    """Everything the layouts write about study `index` (see the module docstring)."""

    index: int
    ids: StudyIds
    findings: list[Finding]
    view: str  # frontal ViewPosition: PA | AP
    images: tuple[StudyImage, ...]  # the frontal image, then the LATERAL one when drawn
    phi: bool  # the report carries injected PHI sentences
    acquired: tuple[str, str] | None  # (StudyDate, StudyTime) for style.acquisition
    report: RenderedReport  # sections with PHI markers, and the 14 CheXpert labels
    sections: list[tuple[str, str]]  # (HEADER, body) with the markers removed
    text: str  # the report in the style's stored form, markers removed
    spans: Spans  # PHI ground truth [(start, end, kind)] into `text`
    rng: np.random.Generator  # the report stream after the shared draws: layout extras go here

    @property
    def labels(self) -> dict[str, float | None]:
        return self.report.labels

    @property
    def exam(self) -> str:
        return EXAM[self.view]


def _date_time(rng: np.random.Generator) -> tuple[str, str]:
    date = f"{2110 + int(rng.integers(90))}{int(rng.integers(1, 13)):02d}"
    date += f"{int(rng.integers(1, 29)):02d}"
    clock = f"{int(rng.integers(24)):02d}{int(rng.integers(60)):02d}"
    clock += f"{int(rng.integers(60)):02d}.{int(rng.integers(1000)):03d}"
    return date, clock


def studies(cfg: SynthConfig, style: StudyStyle) -> Iterator[Study]:
    """The cfg.n studies in file order, written in `style`."""
    ids, _ = cohort(cfg)
    for index, row in enumerate(ids):
        yield make_study(cfg, index, style, row)


def make_study(
    cfg: SynthConfig, index: int, style: StudyStyle, ids: StudyIds | None = None
) -> Study:
    """Study `index` written in `style`; `ids`: cohort(cfg)[0][index] (computed when None)."""
    if ids is None:
        ids = cohort(cfg)[0][index]
    seeds = np.random.SeedSequence([cfg.seed, 1, index]).spawn(3)
    rng = np.random.default_rng(seeds[0])
    findings = sample_findings(rng)
    view, lateral = "PA", False
    if style.views:
        has_device = any(f.kind == "device" for f in findings)
        view = "AP" if has_device or rng.random() < 0.25 else "PA"
        lateral = bool(rng.random() < cfg.lateral_fraction)
    phi = bool(rng.random() < cfg.phi_fraction)
    acquired = _date_time(rng) if style.acquisition else None
    report = render_report(
        rng, findings, placeholder=style.placeholder, exam=EXAM[view], phi=phi, style=style.sections
    )
    sections = [(header, strip_phi_markers(body)[0]) for header, body in report.sections]
    if style.text == "free":
        text, spans = strip_phi_markers(mimic_text(rng, report.sections))
    elif style.text == "assembled":
        text, spans = strip_phi_markers(assemble_sections(report.sections))
    else:  # findings
        body = dict(report.sections)
        text, spans = strip_phi_markers(body.get("FINDINGS") or body["IMPRESSION"])
    kept = tuple(findings)
    images = [StudyImage(position=view, seed=seeds[1], findings=kept, size=cfg.image_size)]
    if lateral:
        images.append(
            StudyImage(position="LATERAL", seed=seeds[2], findings=kept, size=cfg.image_size)
        )
    return Study(
        index=index,
        ids=ids,
        findings=findings,
        view=view,
        images=tuple(images),
        phi=phi,
        acquired=acquired,
        report=report,
        sections=sections,
        text=text,
        spans=spans,
        rng=rng,
    )
