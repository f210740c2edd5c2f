"""Open-I / IU X-ray: ecgen-radiology/<n>.xml (eCitation) + NLMCXR_png/<image id>.png.

One frontal image per report, PHI masked as XXXX; MeSH terms for the definite findings.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image

from medtrain.data.labels import POSITIVE
from medtrain.synth.config import SynthConfig
from medtrain.synth.phantom import Finding
from medtrain.synth.reports import RenderedReport
from medtrain.synth.study import Study, StudyStyle

_MESH_DEVICE = {
    "ett": "Tubes",
    "cvc": "Catheters, Indwelling",
    "pacemaker": "Pacemaker, Artificial",
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


def openi_xml(n: int, sections: list[tuple[str, str]], mesh, image_ids: list[str]) -> bytes:
    """The eCitation document of report `n` (sections without PHI markers)."""
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


class Writer:
    style = StudyStyle(placeholder="XXXX", sections="openi", text="assembled", views=False)
    splits = False  # Open-I has no official split

    def __init__(self, cfg: SynthConfig, out: Path, files: ExitStack) -> None:
        self.cfg = cfg
        self.xml_dir, self.png_dir = out / "ecgen-radiology", out / "NLMCXR_png"
        self.xml_dir.mkdir(parents=True, exist_ok=True)
        self.png_dir.mkdir(parents=True, exist_ok=True)

    def add(self, study: Study) -> dict[str, Any]:
        n = study.index + 1
        image_id = f"CXR{n}_IM-{n % 10000:04d}-1001"
        mesh = mesh_terms(study.findings, study.report)
        (self.xml_dir / f"{n}.xml").write_bytes(openi_xml(n, study.sections, mesh, [image_id]))
        (frontal,) = study.images
        Image.fromarray(frontal.draw()).save(self.png_dir / f"{image_id}.png", compress_level=3)
        return {"report_id": f"CXR{n}", "path": f"ecgen-radiology/{n}.xml"}

    def finish(self) -> dict[str, Any]:
        n = self.cfg.n
        return {"images": n, "frontal": n, "lateral": 0, "reports": n}
