"""Open-I (Indiana University chest X-ray) reader: ecgen-radiology XML + NLMCXR_png images.

Images: `<image id>.png` as unpacked from NLMCXR_png.tgz, looked for once per run in
`<root>/NLMCXR_png/`, `<root>/images/`, then flat in the root beside `ecgen-radiology/`; or only
in `images_root` (the folder itself, or its NLMCXR_png/). The first folder holding one of the
first PROBE_IMAGES images the reports name wins; none is a DataError listing the places searched.

Open-I has no split and no CheXpert labels on disk:
- split: hash of the report id (uId, e.g. "CXR12"): sha1 -> 80% train, 10% validate, 10% test;
- labels: derived from MeSH major/minor terms. The head of each term (text before the first
  '/', case-insensitive) is looked up in MESH_LABELS and the labels it names are set to 1.0;
  "normal" sets No Finding = 1.0 when no other term is positive. Everything else stays None
  (Open-I codes no negatives or uncertainty).
The report text is assembled as "COMPARISON: ...\nINDICATION: ...\nFINDINGS: ...\nIMPRESSION: ..."
from the non-empty AbstractText sections, so `text.record_text` treats it like MIMIC.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

from medtrain.data.errors import DataError
from medtrain.data.labels import CHEXPERT_LABELS, POSITIVE
from medtrain.data.records import Record
from medtrain.data.reports import assemble_sections
from medtrain.data.sources.common import decode_report, hash_split

REPORT_DIR, IMAGE_DIR = "ecgen-radiology", "NLMCXR_png"
PROBE_IMAGES = 64  # image ids from the first reports that locate the image folder
SECTION_ORDER = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
MESH_LABELS: dict[str, tuple[str, ...]] = {
    "consolidation": ("Consolidation", "Lung Opacity"),
    "opacity": ("Lung Opacity",),
    "infiltrate": ("Lung Opacity",),
    "pneumonia": ("Pneumonia",),
    "pleural effusion": ("Pleural Effusion",),
    "cardiomegaly": ("Cardiomegaly",),
    "pneumothorax": ("Pneumothorax",),
    "nodule": ("Lung Lesion",),
    "mass": ("Lung Lesion",),
    "pulmonary edema": ("Edema",),
    "edema": ("Edema",),
    "pulmonary atelectasis": ("Atelectasis",),
    "atelectasis": ("Atelectasis",),
    "tubes": ("Support Devices",),
    "catheters, indwelling": ("Support Devices",),
    "pacemaker, artificial": ("Support Devices",),
    "implanted medical device": ("Support Devices",),
    "medical device": ("Support Devices",),
    "fractures, bone": ("Fracture",),
}


def openi_split(report_id: str) -> str:
    """Deterministic split from the report id (stable across runs and machines)."""
    return hash_split(report_id)


def mesh_labels(terms: Sequence[str]) -> dict[str, float | None]:
    """14 CheXpert labels from MeSH terms (see module docstring)."""
    labels: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    heads = [t.split("/", 1)[0].strip().lower() for t in terms]
    for head in heads:
        for name in MESH_LABELS.get(head, ()):
            labels[name] = POSITIVE
    pathology = any(v == POSITIVE for k, v in labels.items() if k != "Support Devices")
    if "normal" in heads and not pathology:
        labels["No Finding"] = POSITIVE
    return labels


_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def parse_report(path: Path, fallback: str = "") -> ET.Element:
    """The root element of a report XML. A file that is not valid UTF-8 (and declares no other
    encoding the parser accepts) is decoded by `fallback` (data.text_fallback_encoding) before
    parsing, else DataError says so; other parse failures are DataError too."""
    data = path.read_bytes()
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            text = decode_report(data, fallback, str(path))  # DataError without a fallback
            try:
                return ET.fromstring(_DECLARATION.sub("", text, count=1))
            except ET.ParseError as e2:
                raise DataError(f"unreadable XML {path}: {e2}") from None
        raise DataError(f"unreadable XML {path}: {e}") from None


def _xml_sort_key(path: Path) -> tuple[int, str]:
    m = re.fullmatch(r"\d+", path.stem)
    return (int(path.stem) if m else 1 << 62, path.name)


def image_places(root: Path, images_root: str | Path | None = None) -> list[Path]:
    """The folders searched, in order, for `<image id>.png` (see module docstring)."""
    if images_root:
        return [Path(images_root), Path(images_root) / IMAGE_DIR]
    root = Path(root)
    return [root / IMAGE_DIR, root / "images", root]


def find_images(
    root: Path, xml_paths: Sequence[Path], images_root: str | Path | None = None
) -> Path | None:
    """The folder holding the PNGs (once per run): the first of `image_places` with one of the
    first PROBE_IMAGES images named by the reports. None when the reports name no image;
    DataError naming the places searched when no place holds one."""
    probes: list[str] = []
    for xml_path in xml_paths:
        try:
            tree = parse_report(xml_path, "latin-1")  # probing only: any decoding will do
        except (DataError, OSError):
            continue  # skipped with its reason when the records are read
        probes += [i for el in tree.iterfind("parentImage") if (i := el.get("id", ""))]
        if len(probes) >= PROBE_IMAGES:
            break
    if not probes:
        return None
    places = image_places(root, images_root)
    for place in places:
        if any((place / f"{i}.png").is_file() for i in probes[:PROBE_IMAGES]):
            return place
    where = f"data.images_root={str(images_root)!r}" if images_root else f"Open-I {root}"
    raise DataError(
        f"{where}: none of the first {min(len(probes), PROBE_IMAGES)} images the reports name "
        f"(e.g. {probes[0]}.png) found; searched {', '.join(str(p) for p in places)}. Unpack "
        "NLMCXR_png.tgz into one of them or set data.images_root (--images-root) to its folder"
    )


def iter_openi(
    root: Path,
    *,
    images_root: str | Path | None = None,
    splits: Sequence[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
    fallback: str = "",
) -> Iterator[Record]:
    """One Record per parentImage, reports in numeric file order.

    images_root: the folder of the PNGs (None: search the usual places, see module docstring).
    Records: id = image id, study_id = report uId ("CXR12"), subject_id "", view "".
    Unreadable XML (also: not valid UTF-8 and no `fallback` decoding, see parse_report), reports
    without text and missing PNGs are skipped into `skipped`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Open-I root directory not found: {root}")
    report_dir = root / REPORT_DIR
    if not report_dir.is_dir():
        raise DataError(f"Open-I directory not found: {report_dir}")
    xml_paths = sorted(report_dir.glob("*.xml"), key=_xml_sort_key)
    image_dir = find_images(root, xml_paths, images_root) or root / IMAGE_DIR
    keep = None if splits is None else set(splits)

    def skip(item: str, reason: str) -> None:
        if skipped is not None:
            skipped.append((item, reason))

    for xml_path in xml_paths:
        try:
            tree = parse_report(xml_path, fallback)
        except (DataError, OSError) as e:
            skip(xml_path.stem, str(e))
            continue
        uid = tree.find("uId")
        report_id = uid.get("id", "") if uid is not None else ""
        report_id = report_id or f"CXR{xml_path.stem}"
        split = openi_split(report_id)
        if keep is not None and split not in keep:
            continue
        found = {
            (el.get("Label") or "").upper(): (el.text or "").strip()
            for el in tree.iterfind("MedlineCitation/Article/Abstract/AbstractText")
        }
        text = assemble_sections((label, found.get(label, "")) for label in SECTION_ORDER)
        if not (found.get("FINDINGS") or found.get("IMPRESSION")):
            skip(report_id, f"no FINDINGS or IMPRESSION text in {xml_path}")
            continue
        terms = [(el.text or "").strip() for el in tree.iterfind("MeSH/*")]
        labels = mesh_labels([t for t in terms if t])
        parents = list(tree.iterfind("parentImage"))
        if not parents:
            skip(report_id, f"no parentImage in {xml_path}")
            continue
        for parent in parents:
            image_id = parent.get("id", "")
            image = image_dir / f"{image_id}.png"
            if not image_id or not image.is_file():
                skip(image_id or report_id, f"missing image {image}")
                continue
            yield Record(
                id=image_id,
                image_path=image.resolve(),
                report=text,
                labels=dict(labels),
                split=split,
                study_id=report_id,
            )
