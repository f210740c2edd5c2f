"""Synthetic chest X-ray data sets written in the real on-disk layouts (DESIGN.md section 6).

`generate(SynthConfig(layout=...), out)` writes one layout, the same one its reader reads:
- "mimic-cxr-jpg": JPEG images, report .txt files, gzip CSVs;
- "openi": ecgen-radiology XML + NLMCXR_png PNGs;
- "r2gen": annotation.json + images/<id>/{0,1}.png (IU X-ray as packaged by R2Gen);
- "dicom": a hospital export (see sources/dicom.py): export/S#####/IM####.dcm in the encodings
  of synth_dicom.py, reports.csv or report.txt, plus non-radiograph (CT) files to be skipped;
  hospital reports carry real-looking PHI instead of a data set's masks. Also writes
  dicom_truth.jsonl (per file: variant, modality, view, truth PNG) and pixel_truth/*.png, the
  phantoms a correct decoder recovers exactly;
- "manifest": images/*.png + manifest.jsonl or manifest.csv (`manifest_format`).
Every layout writes `phi_ground_truth.jsonl`: one line per report, {"report_id", "path",
"spans"}, spans [start, end, kind] into the raw report text the reader yields (Record.report;
report_id equals Record.study_id; for "dicom" with MEDTRAIN_ID_SALT unset). Everything is a
function of (seed, index): study i uses generators seeded from (seed, 1, i), so output is
byte-identical for a seed and can be chunked later.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medtrain.data.labels import CHEXPERT_LABELS, POSITIVE, UNCERTAIN
from medtrain.data.reports import assemble_sections
from medtrain.data.sources.common import pseudonym
from medtrain.synth.config import LAYOUTS, SynthConfig  # noqa: F401
from medtrain.synth.dicom import VARIANTS, uid, write_dicom
from medtrain.synth.phantom import FINDING_KINDS, Finding, draw_phantom
from medtrain.synth.reports import (
    RenderedReport,
    mimic_text,
    render_report,
    strip_phi_markers,
)

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
METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
_EXAM = {"PA": "CHEST (PA AND LAT)", "AP": "CHEST (PORTABLE AP)"}
_MESH_DEVICE = {
    "ett": "Tubes",
    "cvc": "Catheters, Indwelling",
    "pacemaker": "Pacemaker, Artificial",
}


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
            out.append(Finding(kind=kind, side=side, zone=zone, hedged=hedged))
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


def _study_rngs(seed: int, index: int) -> list[np.random.Generator]:
    """Independent streams for study `index`: [report/metadata, frontal image, lateral image]."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1, index]).spawn(3)]


@contextmanager
def _gzip_csv(path: Path) -> Iterator[Any]:
    """csv.writer into a reproducible gzip file (no name, mtime 0 in the header)."""
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
    ):
        yield csv.writer(text, lineterminator="\n")


def _label_cells(labels: dict[str, float | None]) -> list[str]:
    return ["" if labels[n] is None else f"{labels[n]:.1f}" for n in CHEXPERT_LABELS]


def _hex_id(rng: np.random.Generator) -> str:
    """dicom_id like the real ones: 5 groups of 8 hex digits."""
    return "-".join(f"{x:08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64).tolist())


class _Tally:
    """Summary counts: per-label positives/uncertain over studies, and report/PHI counts."""

    def __init__(self) -> None:
        self.positives: Counter[str] = Counter()
        self.uncertain: Counter[str] = Counter()
        self.splits: Counter[str] = Counter()
        self.phi_reports = 0

    def add(self, report: RenderedReport, n_spans: int) -> None:
        for name, value in report.labels.items():
            self.positives[name] += value == POSITIVE
            self.uncertain[name] += value == UNCERTAIN
        self.phi_reports += n_spans > 0


def generate(cfg: SynthConfig, out: Path) -> dict:
    """Write the data set under `out`; return a summary (counts, label positives, speed, path)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tally = _Tally()
    writers = {
        "mimic-cxr-jpg": _write_mimic,
        "openi": _write_openi,
        "r2gen": _write_r2gen,
        "dicom": _write_dicom,
        "manifest": _write_manifest,
    }
    counts = writers[cfg.layout](cfg, out, tally)
    seconds = time.perf_counter() - t0
    return {
        "layout": cfg.layout,
        "path": str(out),
        **counts,
        "phi_reports": tally.phi_reports,
        "positives": {n: tally.positives[n] for n in CHEXPERT_LABELS},
        "uncertain": {n: tally.uncertain[n] for n in CHEXPERT_LABELS},
        "seconds": round(seconds, 3),
        "images_per_s": round(counts["images"] / max(seconds, 1e-9), 1),
        "image_size": cfg.image_size,
    }


def _mimic_structure(cfg: SynthConfig) -> tuple[list[tuple[int, int, str]], int]:
    """(subject_id, study_id, split) per study in file order, and the number of subjects."""
    rng = np.random.default_rng([cfg.seed, 0])
    sizes: list[int] = []
    while sum(sizes) < cfg.n:
        sizes.append(int(rng.integers(1, 4)))
    sizes[-1] -= sum(sizes) - cfg.n
    n_subj = len(sizes)
    subjects = np.sort(10_000_000 + rng.choice(10_000_000, size=n_subj, replace=False)).tolist()
    studies = np.sort(50_000_000 + rng.choice(10_000_000, size=cfg.n, replace=False)).tolist()
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
            rows.append((subjects[j], studies[k], split_of[j]))
            k += 1
    return rows, n_subj


def _write_mimic(cfg: SynthConfig, out: Path, tally: _Tally) -> dict:
    structure, n_subj = _mimic_structure(cfg)
    n_lateral = 0
    with (
        _gzip_csv(out / "mimic-cxr-2.0.0-metadata.csv.gz") as meta,
        _gzip_csv(out / "mimic-cxr-2.0.0-split.csv.gz") as split_csv,
        _gzip_csv(out / "mimic-cxr-2.0.0-chexpert.csv.gz") as chexpert,
        _gzip_csv(out / "mimic-cxr-2.0.0-negbio.csv.gz") as negbio,
        open(out / "phi_ground_truth.jsonl", "w", encoding="utf-8") as phi_file,
    ):
        meta.writerow(METADATA_COLUMNS)
        split_csv.writerow(SPLIT_COLUMNS)
        chexpert.writerow(LABEL_COLUMNS)
        negbio.writerow(LABEL_COLUMNS)
        for i, (subject, study, split) in enumerate(structure):
            rng, rng_img, rng_lat = _study_rngs(cfg.seed, i)
            findings = sample_findings(rng)
            has_device = any(f.kind == "device" for f in findings)
            view = "AP" if has_device or rng.random() < 0.25 else "PA"
            lateral = rng.random() < cfg.lateral_fraction
            phi = rng.random() < cfg.phi_fraction
            date = f"{2110 + int(rng.integers(90))}{int(rng.integers(1, 13)):02d}"
            date += f"{int(rng.integers(1, 29)):02d}"
            clock = f"{int(rng.integers(24)):02d}{int(rng.integers(60)):02d}"
            clock += f"{int(rng.integers(60)):02d}.{int(rng.integers(1000)):03d}"
            report = render_report(rng, findings, placeholder="___", exam=_EXAM[view], phi=phi)
            text, spans = strip_phi_markers(mimic_text(rng, report.sections))
            folder = out / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
            (folder / f"s{study}").mkdir(parents=True, exist_ok=True)
            (folder / f"s{study}.txt").write_text(text, encoding="utf-8")
            rel = (folder / f"s{study}.txt").relative_to(out).as_posix()
            phi_file.write(json.dumps({"report_id": str(study), "path": rel, "spans": spans}))
            phi_file.write("\n")
            tally.add(report, len(spans))
            tally.splits[split] += 1
            cells = _label_cells(report.labels)
            chexpert.writerow([subject, study, *cells])
            negbio.writerow([subject, study, *cells])
            images = [(view, rng_img)] + ([("LATERAL", rng_lat)] if lateral else [])
            for pos, img_rng in images:
                dicom = _hex_id(rng)
                pixels = draw_phantom(
                    img_rng,
                    findings,
                    cfg.image_size,
                    view="lateral" if pos == "LATERAL" else "frontal",
                )
                Image.fromarray(pixels).save(folder / f"s{study}" / f"{dicom}.jpg", quality=92)
                desc = _EXAM[view]
                orient = "Recumbent" if view == "AP" else "Erect"
                meta.writerow(
                    [dicom, subject, study, desc, pos, cfg.image_size, cfg.image_size, date, clock,
                     desc, _VIEW_MEANING[pos], orient]
                )  # fmt: skip
                split_csv.writerow([dicom, study, subject, split])
                n_lateral += pos == "LATERAL"
    return {
        "images": cfg.n + n_lateral,
        "frontal": cfg.n,
        "lateral": n_lateral,
        "studies": cfg.n,
        "subjects": n_subj,
        "reports": cfg.n,
        "splits": dict(sorted(tally.splits.items())),
    }


def mesh_terms(findings: list[Finding], report: RenderedReport) -> tuple[list[str], list[str]]:
    """Open-I style MeSH (major, minor) terms for the definite findings; ["normal"] if none.

    Hedged findings are not coded (as an indexer would leave them out)."""
    major: list[str] = []
    minor: list[str] = []
    for f in findings:
        if f.hedged:
            continue
        if f.kind == "consolidation":
            major.append(f"Consolidation/lung/{f.zone} lobe/{f.side}")
        elif f.kind == "effusion":
            major.append(f"Pleural Effusion/{f.side}/{f.severity}")
        elif f.kind == "cardiomegaly":
            major.append(f"Cardiomegaly/{f.severity}")
        elif f.kind == "pneumothorax":
            major.append(f"Pneumothorax/{f.side}")
        elif f.kind == "nodule":
            major.append(f"Nodule/lung/{f.zone} lobe/{f.side}")
        elif f.kind == "device":
            minor.append(_MESH_DEVICE[f.device])
        elif f.kind == "edema":
            major.append("Pulmonary Edema")
        elif f.kind == "atelectasis":
            major.append(f"Pulmonary Atelectasis/base/{f.side}")
    if report.labels["Pneumonia"] == POSITIVE:
        minor.append("Pneumonia")
    if not findings:
        major = ["normal"]
    return major, minor


def _openi_xml(n: int, sections: list[tuple[str, str]], mesh, image_ids: list[str]) -> bytes:
    root = ET.Element("eCitation")
    ET.SubElement(root, "meta", type="rr")
    ET.SubElement(root, "uId", id=f"CXR{n}")
    ET.SubElement(root, "pmcId", id=str(n))
    ET.SubElement(root, "docSource").text = "CXR"
    ET.SubElement(root, "IUXRId", id=str(n))
    cit = ET.SubElement(
        root, "MedlineCitation", Owner="Indiana University", Status="supplied by publisher"
    )
    art = ET.SubElement(cit, "Article", PubModel="Electronic")
    ET.SubElement(art, "ArticleTitle").text = "Indiana University Chest X-ray Collection"
    abstract = ET.SubElement(art, "Abstract")
    present = dict(sections)
    for label in ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"):
        ET.SubElement(abstract, "AbstractText", Label=label).text = present.get(label) or None
    mesh_el = ET.SubElement(root, "MeSH")
    for tag, terms in zip(("major", "minor"), mesh, strict=True):
        for term in terms:
            ET.SubElement(mesh_el, tag).text = term
    for k, image_id in enumerate(image_ids):
        parent = ET.SubElement(root, "parentImage", id=image_id)
        ET.SubElement(parent, "figureId").text = f"F{k + 1}"
        ET.SubElement(parent, "caption").text = "Xray Chest PA and Lateral"
        ET.SubElement(
            ET.SubElement(parent, "panel", type="single"), "url"
        ).text = f"/hadoop/storage/radiology/extract/{image_id}.jpg"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _write_openi(cfg: SynthConfig, out: Path, tally: _Tally) -> dict:
    xml_dir, png_dir = out / "ecgen-radiology", out / "NLMCXR_png"
    xml_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    with open(out / "phi_ground_truth.jsonl", "w", encoding="utf-8") as phi_file:
        for i in range(cfg.n):
            n = i + 1
            rng, rng_img, _ = _study_rngs(cfg.seed, i)
            findings = sample_findings(rng)
            phi = rng.random() < cfg.phi_fraction
            report = render_report(rng, findings, placeholder="XXXX", phi=phi, style="openi")
            _, spans = strip_phi_markers(assemble_sections(report.sections))
            clean = [(label, strip_phi_markers(body)[0]) for label, body in report.sections]
            image_id = f"CXR{n}_IM-{n % 10000:04d}-1001"
            mesh = mesh_terms(findings, report)
            (xml_dir / f"{n}.xml").write_bytes(_openi_xml(n, clean, mesh, [image_id]))
            pixels = draw_phantom(rng_img, findings, cfg.image_size)
            Image.fromarray(pixels).save(png_dir / f"{image_id}.png", compress_level=3)
            rel = f"ecgen-radiology/{n}.xml"
            phi_file.write(json.dumps({"report_id": f"CXR{n}", "path": rel, "spans": spans}) + "\n")
            tally.add(report, len(spans))
    return {"images": cfg.n, "frontal": cfg.n, "lateral": 0, "reports": cfg.n}


def _frontal_and_lateral(
    cfg: SynthConfig, rng: np.random.Generator, findings: list[Finding], rngs: list
) -> tuple[str, list[tuple[str, np.random.Generator]], bool]:
    """(frontal view, [(view position, image rng)], phi) with the draws _write_mimic makes."""
    has_device = any(f.kind == "device" for f in findings)
    view = "AP" if has_device or rng.random() < 0.25 else "PA"
    lateral = rng.random() < cfg.lateral_fraction
    phi = rng.random() < cfg.phi_fraction
    images = [(view, rngs[0])] + ([("LATERAL", rngs[1])] if lateral else [])
    return view, images, phi


def _phantom(cfg: SynthConfig, rng: np.random.Generator, findings: list[Finding], pos: str):
    view = "lateral" if pos == "LATERAL" else "frontal"
    return draw_phantom(rng, findings, cfg.image_size, view=view)


def _write_r2gen(cfg: SynthConfig, out: Path, tally: _Tally) -> dict:
    """annotation.json + images/<id>/<k>.png; report = the FINDINGS text (else IMPRESSION)."""
    structure, n_subj = _mimic_structure(cfg)
    key = {"train": "train", "validate": "val", "test": "test"}
    annotation: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    n_images = 0
    with open(out / "phi_ground_truth.jsonl", "w", encoding="utf-8") as phi_file:
        for i, (_, _, split) in enumerate(structure):
            rng, *rngs = _study_rngs(cfg.seed, i)
            findings = sample_findings(rng)
            _, images, phi = _frontal_and_lateral(cfg, rng, findings, rngs)
            report = render_report(rng, findings, placeholder="XXXX", phi=phi, style="openi")
            body = dict(report.sections)
            text, spans = strip_phi_markers(body.get("FINDINGS") or body["IMPRESSION"])
            rid = f"CXR{i + 1}_IM-{(i + 1) % 10000:04d}"
            (out / "images" / rid).mkdir(parents=True, exist_ok=True)
            paths = []
            for k, (pos, img_rng) in enumerate(images):
                pixels = _phantom(cfg, img_rng, findings, pos)
                Image.fromarray(pixels).save(out / "images" / rid / f"{k}.png", compress_level=3)
                paths.append(f"{rid}/{k}.png")
            entry = {"id": rid, "report": text, "image_path": paths, "split": key[split]}
            annotation[key[split]].append(entry)
            phi_file.write(
                json.dumps({"report_id": rid, "path": "annotation.json", "spans": spans})
            )
            phi_file.write("\n")
            tally.add(report, len(spans))
            tally.splits[split] += 1
            n_images += len(images)
    (out / "annotation.json").write_text(json.dumps(annotation), encoding="utf-8")
    return {
        "images": n_images,
        "frontal": cfg.n,
        "lateral": n_images - cfg.n,
        "reports": cfg.n,
        "subjects": n_subj,
        "splits": dict(sorted(tally.splits.items())),
    }


_INSTITUTIONS = ("Mercy General Hospital", "Lakeside Community Hospital", "Riverside Health Center")
_PATIENT_NAMES = ("DOE^JOHN", "ROE^MARY^A", "NGUYEN^WEI", "OKAFOR^CHINEDU", "GARCIA^LUCIA")


def _dicom_header(cfg: SynthConfig, rng: np.random.Generator, i: int, subject: int, view: str):
    """Patient/study attributes of study i, with the identifiers a real export carries."""
    prng = np.random.default_rng([cfg.seed, 3, subject])  # same patient, same identity
    birth = f"{1930 + int(prng.integers(70))}{int(prng.integers(1, 13)):02d}"
    birth += f"{int(prng.integers(1, 29)):02d}"
    date = f"{2015 + int(rng.integers(10))}{int(rng.integers(1, 13)):02d}"
    date += f"{int(rng.integers(1, 29)):02d}"
    return {
        "PatientName": _PATIENT_NAMES[int(prng.integers(len(_PATIENT_NAMES)))],
        "PatientID": f"{subject}",
        "PatientBirthDate": birth,
        "PatientSex": "MF"[int(prng.integers(2))],
        "StudyInstanceUID": uid(cfg.seed, "study", i),
        "AccessionNumber": f"RA{int(rng.integers(1000, 10000))}{i:07d}",
        "StudyDate": date,
        "StudyTime": f"{int(rng.integers(24)):02d}{int(rng.integers(60)):02d}00",
        "InstitutionName": _INSTITUTIONS[int(rng.integers(len(_INSTITUTIONS)))],
        "ReferringPhysicianName": "SMITH^ANNA",
        "BodyPartExamined": "CHEST",
        "StudyDescription": _EXAM[view],
    }


def _write_dicom(cfg: SynthConfig, out: Path, tally: _Tally) -> dict:
    """Hospital export: export/S#####/IM####.dcm; reports.csv, or report.txt every 4th study."""
    structure, n_subj = _mimic_structure(cfg)
    reports: list[tuple[str, str]] = []
    n_images = n_other = 0
    with (
        open(out / "phi_ground_truth.jsonl", "w", encoding="utf-8") as phi_file,
        open(out / "dicom_truth.jsonl", "w", encoding="utf-8") as truth_file,
    ):
        for i, (subject, _, split) in enumerate(structure):
            rng, *rngs = _study_rngs(cfg.seed, i)
            findings = sample_findings(rng)
            view, images, phi = _frontal_and_lateral(cfg, rng, findings, rngs)
            report = render_report(rng, findings, placeholder=None, exam=_EXAM[view], phi=phi)
            text, spans = strip_phi_markers(mimic_text(rng, report.sections))
            header = _dicom_header(cfg, rng, i, subject, view)
            folder = f"export/S{i:05d}"
            for k, (pos, img_rng) in enumerate(images):
                pixels = _phantom(cfg, img_rng, findings, pos)
                variant = VARIANTS[n_images % len(VARIANTS)]
                modality = "CR" if variant.startswith("m1") else "DX"
                rel = f"{folder}/IM{k + 1:04d}.dcm"
                extra = {
                    "ViewPosition": "LL" if pos == "LATERAL" else pos,
                    "SeriesInstanceUID": uid(cfg.seed, "series", i, k),
                    "InstanceNumber": "1",
                }
                sop = uid(cfg.seed, "sop", i, k)
                write_dicom(
                    out / rel, pixels, variant=variant, modality=modality,
                    header=header | extra, sop_uid=sop,
                )  # fmt: skip
                truth = f"pixel_truth/S{i:05d}/IM{k + 1:04d}.png"
                (out / truth).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(out / truth, compress_level=3)
                line = {"path": rel, "truth": truth, "variant": variant, "modality": modality}
                truth_file.write(json.dumps(line | {"view": pos, "sop_uid": sop}) + "\n")
                n_images += 1
            if i % 5 == 2:  # a CT localizer in the same study folder: not a radiograph
                ct = np.zeros((16, 16), np.uint8)
                extra = {"SeriesInstanceUID": uid(cfg.seed, "series", i, "ct")}
                write_dicom(
                    out / folder / "CT0001.dcm", ct, variant="m2-u12-full", modality="CT",
                    header=header | extra, sop_uid=uid(cfg.seed, "sop", i, "ct"),
                )  # fmt: skip
                n_other += 1
            if i % 4 == 3:
                path = f"{folder}/report.txt"
                (out / path).write_text(text, encoding="utf-8")
            else:
                path = "reports.csv"
                reports.append((header["AccessionNumber"], text))
            gt = {"report_id": pseudonym(header["StudyInstanceUID"]), "path": path}
            phi_file.write(
                json.dumps(gt | {"accession": header["AccessionNumber"], "spans": spans})
            )
            phi_file.write("\n")
            tally.add(report, len(spans))
            tally.splits[split] += 1
    with open(out / "reports.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["AccessionNumber", "report"])
        writer.writerows(reports)
    return {
        "images": n_images,
        "frontal": cfg.n,
        "lateral": n_images - cfg.n,
        "other_modality": n_other,
        "studies": cfg.n,
        "subjects": n_subj,
        "reports": cfg.n,
        "splits": dict(sorted(tally.splits.items())),
    }


MANIFEST_COLUMNS = ("id", "image", "report", "split", "study_id", "subject_id", "view")


def _write_manifest(cfg: SynthConfig, out: Path, tally: _Tally) -> dict:
    """images/*.png + manifest.{jsonl,csv}: one row per image, CheXpert labels, split by subject."""
    structure, n_subj = _mimic_structure(cfg)
    name = f"manifest.{cfg.manifest_format}"
    rows: list[dict[str, Any]] = []
    (out / "images").mkdir(parents=True, exist_ok=True)
    with open(out / "phi_ground_truth.jsonl", "w", encoding="utf-8") as phi_file:
        for i, (subject, study, split) in enumerate(structure):
            rng, *rngs = _study_rngs(cfg.seed, i)
            findings = sample_findings(rng)
            view, images, phi = _frontal_and_lateral(cfg, rng, findings, rngs)
            report = render_report(rng, findings, placeholder="___", exam=_EXAM[view], phi=phi)
            text, spans = strip_phi_markers(mimic_text(rng, report.sections))
            for k, (pos, img_rng) in enumerate(images):
                rel = f"images/{i:06d}_{k}.png"
                pixels = _phantom(cfg, img_rng, findings, pos)
                Image.fromarray(pixels).save(out / rel, compress_level=3)
                row = dict(zip(MANIFEST_COLUMNS[:3], (f"{study}_{k}", rel, text), strict=True))
                row |= {"split": split, "study_id": str(study), "subject_id": str(subject)}
                rows.append(row | {"view": pos, "labels": report.labels})
            gt = {"report_id": str(study), "path": name, "spans": spans}
            phi_file.write(json.dumps(gt) + "\n")
            tally.add(report, len(spans))
            tally.splits[split] += 1
    if cfg.manifest_format == "jsonl":
        with open(out / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    else:
        with open(out / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow([*MANIFEST_COLUMNS, *CHEXPERT_LABELS])
            for row in rows:
                cells = [row[c] for c in MANIFEST_COLUMNS] + _label_cells(row["labels"])
                writer.writerow(cells)
    return {
        "images": len(rows),
        "frontal": cfg.n,
        "lateral": len(rows) - cfg.n,
        "reports": cfg.n,
        "subjects": n_subj,
        "manifest": name,
        "splits": dict(sorted(tally.splits.items())),
    }
