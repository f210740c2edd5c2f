"""Procedural chest X-ray phantoms (grayscale uint8) with findings that are actually drawn.

Coordinates are normalized: u (columns) and v (rows) in [-1, 1], v grows downward. Images follow
the radiographic convention: the patient's RIGHT is on the image LEFT (u < 0). Per-finding sizes
are chosen to stay visible after downsampling to 128 x 128. All drawing is vectorized numpy on
float32 arrays; local findings are drawn on their bounding boxes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

SIDES = ("right", "left")  # patient sides
ZONES = ("upper", "middle", "lower")
DEVICES = ("ett", "cvc", "pacemaker")  # endotracheal tube, central venous catheter, pacemaker
FINDING_KINDS = (
    "consolidation",
    "effusion",
    "cardiomegaly",
    "pneumothorax",
    "nodule",
    "device",
    "edema",
    "atelectasis",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One drawn finding.

    kind:     one of FINDING_KINDS
    side:     patient side "right" | "left" | "bilateral" | "" (not lateralized)
    zone:     "upper" | "middle" | "lower" | "" (lobe for consolidation/nodule/atelectasis)
    severity: "small" | "moderate" | "large" | "mild" | "" (size of what is drawn)
    device:   one of DEVICES for kind == "device"
    hedged:   the report states it with uncertainty; drawn fainter/smaller
    pneumonia: kind == "consolidation" only: an infectious (pneumonia) pattern, drawn
              differently from a non-infectious consolidation; the Pneumonia label follows it
    """

    kind: str
    side: str = ""
    zone: str = ""
    severity: str = ""
    device: str = ""
    hedged: bool = False
    pneumonia: bool = False


# Intensities on a 0..255 scale before global contrast jitter.
AIR, SOFT, LUNG, HEART, BONE = 12.0, 150.0, 58.0, 182.0, 38.0
ZONE_V = {"upper": -0.40, "middle": -0.02, "lower": 0.24}  # zone centre rows (v)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates, broadcastable: u (1, size), v (size, 1) float32, read-only.

    Expressions in u alone or v alone stay 1-D; only their combinations cost a full image."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    c.flags.writeable = False
    return c[None, :], c[:, None]


def _ramp(d: np.ndarray, w: float) -> np.ndarray:
    """Soft step: 0 for d <= -w/2, 1 for d >= w/2 (d is a signed 'inside' measure)."""
    return np.clip(d * (1.0 / w) + 0.5, 0.0, 1.0)


def _box(size: int, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
    """Pixel slices (rows, cols) covering the normalized box, clipped to the image."""

    def px(a: float, b: float) -> slice:
        lo = int(np.floor((a + 1.0) / 2.0 * size))
        hi = int(np.ceil((b + 1.0) / 2.0 * size))
        return slice(max(lo, 0), min(max(hi, 0), size))

    return px(v0, v1), px(u0, u1)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise, about unit variance: (h, w) float32, `cells` blobs across."""
    small = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
    img = Image.fromarray(small).resize((shape[1], shape[0]), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _seg_dist(u: np.ndarray, v: np.ndarray, p: tuple[float, float], q: tuple[float, float]):
    """Distance from each (u, v) to segment p-q (normalized units)."""
    du, dv = q[0] - p[0], q[1] - p[1]
    t = np.clip(((u - p[0]) * du + (v - p[1]) * dv) / (du * du + dv * dv + 1e-12), 0.0, 1.0)
    return np.hypot(u - (p[0] + t * du), v - (p[1] + t * dv))


def _polyline(img: np.ndarray, pts: Sequence[tuple[float, float]], width: float, val: float):
    """Blend a polyline of given width (normalized) towards intensity `val`, in place."""
    size = img.shape[0]
    us, vs = [p[0] for p in pts], [p[1] for p in pts]
    sl = _box(size, min(us) - width, max(us) + width, min(vs) - width, max(vs) + width)
    u, v = _grid(size)
    u, v = u[:, sl[1]], v[sl[0]]
    d = np.min([_seg_dist(u, v, a, b) for a, b in zip(pts[:-1], pts[1:], strict=True)], axis=0)
    m = _ramp(width / 2 - d, 2.0 / size)
    img[sl] += (val - img[sl]) * m


@dataclass(slots=True, kw_only=True)
class _Anatomy:
    """Per-image anatomical parameters (normalized units)."""

    body_w: float  # torso half width
    apex: float  # lung apex row
    lat: tuple[float, float]  # lateral lung half widths (right, left)
    med: float  # medial lung edge |u|
    base: tuple[float, float]  # costophrenic angle rows (right, left)
    dome: float  # diaphragm dome height
    heart: tuple[float, float, float, float]  # centre u, centre v, half width, half height
    rib_phase: float


def _sample_anatomy(rng: np.random.Generator) -> _Anatomy:
    """Always draws the same number of random values (findings do not shift the stream)."""
    r = rng.uniform(-1.0, 1.0, size=12).tolist()  # Python floats keep arrays float32
    lat_r = 0.80 + 0.04 * r[2]
    return _Anatomy(
        body_w=0.93 + 0.03 * r[0],
        apex=-0.74 + 0.03 * r[1],
        lat=(lat_r, lat_r + 0.02 * r[3]),
        med=0.09 + 0.01 * r[4],
        base=(0.55 + 0.03 * r[5], 0.60 + 0.03 * r[6]),  # right hemidiaphragm sits higher
        dome=0.15 + 0.03 * r[7],
        heart=(0.08 + 0.02 * r[8], 0.30 + 0.02 * r[9], 0.27 + 0.02 * r[10], 0.24),
        rib_phase=0.5 * (r[11] + 1.0),
    )


def _lung_half(au: np.ndarray, v: np.ndarray, a: _Anatomy, side: int) -> np.ndarray:
    """Soft lung mask on one image half; au = |u| distance from midline, side 0 right 1 left."""
    lat, base = a.lat[side], a.base[side]
    x_lat = lat * np.sqrt(np.clip((v - a.apex) * (1.0 / 0.55), 0.0, 1.0))  # widening from apex
    q = np.clip((au - a.med) / (lat - a.med), 0.0, 1.0)
    v_dia = base - a.dome * 4.0 * q * (1.0 - q)  # dome, lowest at the costophrenic angle
    w = 0.03
    return _ramp(au - a.med, w) * _ramp(x_lat - au, w) * _ramp(v_dia - v, w) * _ramp(v - a.apex, w)


@dataclass(frozen=True, slots=True)
class PixelBox:
    """Bounding box of what was drawn for findings[index], in pixels of the returned image
    (after the global rotation/shift): x, y = top-left column, row; width, height."""

    index: int
    x: int
    y: int
    width: int
    height: int


def draw_phantom(
    rng: np.random.Generator,
    findings: Sequence[Finding] = (),
    size: int = 512,
    *,
    view: str = "frontal",
    boxes: list[PixelBox] | None = None,
) -> np.ndarray:
    """Draw one chest radiograph: (size, size) uint8. view "frontal" (PA/AP) or "lateral".

    The anatomy and texture draws come first and do not depend on `findings`, so the same
    generator state with and without a finding gives images that differ only by the finding.
    Nodule jitter is drawn next, then per consolidation CONS_DRAWS values (pattern jitter), so an
    image without consolidation is drawn exactly as before consolidations had patterns.
    boxes: when a list, receives one PixelBox per frontal consolidation (where its opacity was
    drawn: the region above a third of its peak density, through the same geometric transform
    as the image); nothing for laterals (consolidation is not rendered there).
    """
    if view == "lateral":
        return _draw_lateral(rng, findings, size)
    if view != "frontal":
        raise ValueError(f"view must be 'frontal' or 'lateral', got {view!r}")
    a = _sample_anatomy(rng)
    # Global jitter: contrast, brightness, gamma, rotation, shift u, shift v.
    aug = rng.uniform(-1.0, 1.0, size=6).tolist()
    texture = _smooth_noise(rng, (size, size), 28)  # vessels / lung markings
    patch = _smooth_noise(rng, (size, size), 7)  # patchiness of opacities, body density
    grain = rng.standard_normal((size, size), dtype=np.float32)
    kinds = {f.kind: f for f in findings}
    nodule_jitter = [rng.uniform(-1.0, 1.0, size=3) for f in findings if f.kind == "nodule"]
    cons_jitter = [
        rng.uniform(-1.0, 1.0, size=CONS_DRAWS).tolist()
        for f in findings
        if f.kind == "consolidation"
    ]
    u, v = _grid(size)
    h = size // 2
    img = _body(u, v, a, patch)

    # Lungs: L is the lung mask (right lung on the left half, left lung on the right half).
    lung = np.empty((size, size), np.float32)
    lung[:, :h] = _lung_half(-u[:, :h], v, a, 0)
    lung[:, h:] = _lung_half(u[:, h:], v, a, 1)
    clear = None  # pneumothorax region (no lung markings)
    if "pneumothorax" in kinds:
        clear = _pneumothorax(lung, a, kinds["pneumothorax"])
    markings = texture.clip(0.0, None)
    hil = np.exp(-((np.abs(u) - 0.2) ** 2 + v**2) * (1.0 / 0.09))  # vessels denser at the hila
    markings *= (10.0 + 28.0 * hil) * lung
    if clear is not None:
        markings *= 1.0 - clear
    img -= (SOFT - LUNG) * lung * (1.0 if clear is None else 1.0 + 0.45 * clear)
    img += markings
    _bones(img, u, v, a)

    drawn: list[tuple[int, tuple[slice, slice], np.ndarray]] = []  # consolidation opacities
    for i, f in enumerate(findings):  # lung findings first: the heart and mediastinum hide
        if f.kind == "consolidation":
            sl, add = _consolidation(img, lung, texture, patch, f, cons_jitter[len(drawn)])
            drawn.append((i, sl, add))
        elif f.kind == "edema":
            _edema(img, lung, u, v, patch, f)
        elif f.kind == "atelectasis":
            _atelectasis(img, lung, f)
        elif f.kind == "effusion":
            _effusion(img, lung, u, v, a, f)
    _mediastinum(img, u, v, a, kinds.get("cardiomegaly"))
    for f in findings:
        if f.kind == "nodule":
            _nodule(img, nodule_jitter.pop(0), f)
        elif f.kind == "device":
            _device(img, f)
    if clear is not None:  # visceral pleural line, drawn last so nothing hides it
        _pleural_line(img, lung, a, kinds["pneumothorax"])

    img += 3.0 * grain
    if boxes is not None:
        for i, sl, add in drawn:
            box = _drawn_box(size, sl, add, aug)
            if box is not None:
                boxes.append(PixelBox(i, *box))
    return _finish(img, aug)


def _body(u: np.ndarray, v: np.ndarray, a: _Anatomy, patch: np.ndarray) -> np.ndarray:
    """Air background, torso with rounded shoulders, neck; soft tissue density varies."""
    tu, tv = np.square(u * (1.0 / a.body_w)), np.square((v - 0.2) * (1.0 / 1.02))
    torso = tu * tu + tv * tv  # superellipse, exponent 4
    body = np.maximum(_ramp(1.0 - torso, 0.06), _ramp(0.24 - np.abs(u), 0.04) * (v < 0))
    img = AIR + (SOFT - AIR + 6.0 * patch + 18.0 * np.clip(v, 0.0, None)) * body
    return img.astype(np.float32, copy=False)


def _bones(img: np.ndarray, u: np.ndarray, v: np.ndarray, a: _Anatomy) -> None:
    """Ribs (posterior arcs and fainter anterior ribs), clavicles, spine; additive, in place."""
    size = img.shape[0]
    sl = _box(size, -1.0, 1.0, -0.86, 0.68)  # thorax rows
    au, vv = np.abs(u), v[sl[0]]
    thorax = _ramp(a.body_w - 0.05 - au, 0.05) * _ramp(au - 0.06, 0.04)  # (1, S)
    thorax_v = _ramp(vv + 0.82, 0.05) * _ramp(0.62 - vv, 0.1)  # (h, 1)
    # Rib bands cos(k (v - g(u))) expanded as cos.cos + sin.sin: 1-D factors, outer products.
    k = 2 * np.pi / 0.135  # rib period 0.135
    kv = k * (vv + a.rib_phase * 0.135)
    kg, ka = k * 0.55 * (au - 0.1) ** 2, k * 0.35 * au
    cv, sv = np.cos(kv), np.sin(kv)
    post = np.square((cv * np.cos(kg) + sv * np.sin(kg)).clip(0.0, None))  # posterior ribs
    ant = np.square(np.square((cv * np.cos(ka) - sv * np.sin(ka)).clip(0.0, None)))  # anterior
    ribs = post * post * post + 0.35 * ant * ant  # narrow bands: cos^6, cos^8
    img[sl[0]] += (28.0 * thorax) * ribs * thorax_v
    # Clavicles: gently S-shaped bands from the sternal notch to the shoulders.
    sl = _box(img.shape[0], -0.85, 0.85, -0.98, -0.5)
    uu, vv = np.abs(u[:, sl[1]]), v[sl[0]]
    centre = -0.70 - 0.10 * uu + 0.12 * (uu - 0.45) ** 2
    clav = _ramp(0.035 - np.abs(vv - centre), 0.02) * _ramp(uu - 0.07, 0.03)
    img[sl] += 1.2 * BONE * clav * _ramp(0.78 - uu, 0.06)
    # Spine: vertebral column with bodies, mostly seen through the mediastinum.
    spine = _ramp(0.075 - np.abs(u), 0.02) * (0.6 + 0.4 * np.cos(v * (2 * np.pi / 0.11)) ** 2)
    img += BONE * spine


def _mediastinum(img: np.ndarray, u, v, a: _Anatomy, cardio: Finding | None) -> None:
    """Mediastinum, aortic knob, trachea and heart; cardiomegaly enlarges the heart."""
    size = img.shape[0]
    sl = _box(size, -0.3, 0.3, -1.0, 0.6)
    uu, vv = u[:, sl[1]], v[sl[0]]
    med = _ramp(0.11 + 0.03 * np.clip(vv + 0.3, 0, None) - np.abs(uu - 0.015), 0.04)
    med = med * _ramp(0.5 - vv, 0.1)
    knob = _ramp(0.075 - np.hypot(uu - 0.13, vv + 0.36), 0.04)
    m = np.maximum(med, knob)
    img[sl] += (HEART - 10.0 - img[sl]) * m
    trachea = _ramp(0.035 - np.abs(uu - 0.0), 0.02) * _ramp(-0.35 - vv, 0.06)
    img[sl] -= 55.0 * trachea
    hx, hy, hw, hh = a.heart
    if cardio is not None:  # enlarged mainly to the patient's left (image right): CTR > 0.5
        grow = {"mild": 0.16, "moderate": 0.21, "large": 0.26}.get(cardio.severity, 0.21)
        hx, hw, hh = hx + 0.6 * grow, hw + grow, hh + 0.05
    sl = _box(size, hx - hw - 0.05, hx + hw + 0.05, hy - hh - 0.05, hy + hh + 0.05)
    e = ((u[:, sl[1]] - hx) * (1.0 / hw)) ** 2 + ((v[sl[0]] - hy) * (1.0 / hh)) ** 2
    img[sl] += (HEART - img[sl]) * _ramp(1.0 - e, 0.12)


def _side_u(side: str, au: float) -> float:
    """Image u of a point at distance au from the midline on the patient's `side`."""
    return -au if side == "right" else au


CONS_DRAWS = 6  # random values per consolidation: centre shift u, v, size, 3 branch angles


def _consolidation(img, lung, texture, patch, f: Finding, j: list[float]):
    """Airspace opacity in a lobe, clipped to the lung; returns (slices, added density).

    pneumonia (infectious): dense, lobar/segmental, irregular and patchy (fine texture), with
    air bronchograms (dark branching lines inside the opacity, from the hilar side outwards).
    Otherwise (non-infectious): fainter, smooth, round, no bronchograms. Hedged: smaller and
    fainter, same pattern."""
    size = img.shape[0]
    au = (0.40 if f.zone != "middle" else 0.32) + 0.04 * j[0]
    uc, vc = _side_u(f.side, au), ZONE_V.get(f.zone, 0.3) + 0.04 * j[1]
    scale = (0.7 if f.hedged else 1.0) * (1.0 + 0.1 * j[2])
    if f.pneumonia:
        rx, ry = 0.22 * scale, 0.17 * scale
    else:
        rx = ry = 0.12 * scale
    sl = _box(size, uc - 2 * rx, uc + 2 * rx, vc - 2 * ry, vc + 2 * ry)
    u, v = _grid(size)
    uu, vv = u[:, sl[1]], v[sl[0]]
    d2 = ((uu - uc) / rx) ** 2 + ((vv - vc) / ry) ** 2
    if f.pneumonia:
        # irregular lobar margin and patchy airspace filling from the fine texture noise
        fine = texture[sl]
        blob = _ramp(1.0 - d2 + 0.35 * patch[sl] + 0.25 * fine, 0.35)
        dens = (0.8 + 0.2 * fine).clip(0.45, 1.1)
        amp = 100.0 if f.hedged else 130.0
        add = amp * blob * dens
        # air bronchograms: a trunk from the hilar side with three branches, darker lines
        out = 1.0 if uc > 0 else -1.0  # lateral direction in image u
        root = (uc - out * 0.9 * rx, vc + 0.1 * ry)
        mid = (uc - out * 0.1 * rx, vc)
        lines = [[root, mid]]
        for k in range(3):
            ang = (-0.7 + 0.7 * k) + 0.25 * j[3 + k]
            tip = (mid[0] + out * 0.85 * rx * np.cos(ang), mid[1] + 0.85 * ry * np.sin(ang))
            lines.append([mid, (float(tip[0]), float(tip[1]))])
        sub = np.zeros((size, size), np.float32)
        for line in lines:
            _polyline(sub, line, 0.024, 1.0)
        tree = sub[sl]
        add = add * (1.0 - 0.65 * tree * _ramp(0.8 - d2, 0.3))
    else:
        blob = np.exp(-1.2 * d2 * d2)  # flat-topped, smooth, round
        amp = 45.0 if f.hedged else 62.0
        add = amp * blob
    add = (add * lung[sl]).astype(np.float32)
    img[sl] += add
    return sl, add


def _drawn_box(size, sl, add, aug) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) in output pixels of where `add` (on slices `sl`) exceeds a third
    of its peak, after the image's rotation/shift; None when nothing was drawn."""
    peak = float(add.max()) if add.size else 0.0
    if peak <= 0.0:
        return None
    mask = np.zeros((size, size), np.float32)
    mask[sl] = (add > peak / 3.0).astype(np.float32)
    moved = Image.fromarray(mask).transform(  # float32 -> mode "F"
        (size, size), Image.AFFINE, _affine(size, aug), Image.BILINEAR, fillcolor=0.0
    )
    rows, cols = np.nonzero(np.asarray(moved) >= 0.5)
    if rows.size == 0:
        return None
    x0, y0 = int(cols.min()), int(rows.min())
    return x0, y0, int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1


def _edema(img, lung, u, v, patch, f: Finding) -> None:
    """Bilateral hazy perihilar opacity (bat-wing)."""
    haze = np.exp(-((np.abs(u) - 0.22) ** 2 * (1 / 0.10) + (v - 0.02) ** 2 * (1 / 0.16)))
    amp = 60.0 if f.hedged else 85.0
    img += amp * haze * (0.85 + 0.2 * patch) * lung


def _atelectasis(img, lung, f: Finding) -> None:
    """Plate-like linear band in the chosen zone (default lower)."""
    uc, vc = _side_u(f.side, 0.42), ZONE_V.get(f.zone or "lower", 0.3) + 0.05
    p, q = (uc - 0.18, vc - 0.03), (uc + 0.18, vc + 0.03)
    region = np.zeros_like(img)
    _polyline(region, [p, q], 0.035 if f.hedged else 0.05, 1.0)
    img += (45.0 if f.hedged else 70.0) * region * lung


def _effusion(img, lung, u, v, a: _Anatomy, f: Finding) -> None:
    """Fluid at the lung base with a meniscus: blunts the costophrenic angle."""
    sides = ("right", "left") if f.side == "bilateral" else (f.side,)
    height = (
        0.08 if f.hedged else {"small": 0.14, "moderate": 0.26, "large": 0.40}.get(f.severity, 0.2)
    )
    size = img.shape[0]
    for side in sides:
        s = SIDES.index(side)
        base = a.base[s]
        lo, hi = (-1.0, 0.0) if side == "right" else (0.0, 1.0)
        sl = _box(size, lo, hi, base - 3 * height - 0.1, 0.9)
        au = np.abs(u[:, sl[1]])
        q = np.clip((au - a.med) / (a.lat[s] - a.med), 0.0, 1.0)
        level = base - height * (0.55 + 0.75 * q**2)  # meniscus climbs laterally
        fluid = _ramp(v[sl[0]] - level, 0.05) * lung[sl]
        img[sl] += (SOFT + 8.0 - img[sl]) * fluid


def _ptx_masks(lung: np.ndarray, a: _Anatomy, f: Finding) -> tuple[tuple[slice, slice], np.ndarray]:
    """Bounding box and shrunk (collapsed) lung mask for a pneumothorax."""
    size = lung.shape[0]
    s = SIDES.index(f.side)
    k = 0.80 if f.hedged or f.severity == "small" else 0.68  # collapsed lung scale
    sl = _box(size, -1.0, 0.0, -1.0, 0.7) if s == 0 else _box(size, 0.0, 1.0, -1.0, 0.7)
    u, v = _grid(size)
    au, vv = np.abs(u[:, sl[1]]), v[sl[0]]
    hu, hv = 0.25, 0.05  # hilum: the lung collapses towards it, from the apex and laterally
    su = hu + (au - hu) / k
    sv = np.where(vv < hv, hv + (vv - hv) / k, vv)
    return sl, _lung_half(np.maximum(su, au), sv, a, s)


def _pneumothorax(lung: np.ndarray, a: _Anatomy, f: Finding) -> np.ndarray:
    """Return the pleural air region (full size, 0..1): darker, without markings."""
    sl, shrunk = _ptx_masks(lung, a, f)
    clear = np.zeros_like(lung)
    clear[sl] = lung[sl] * (1.0 - shrunk)
    return clear


def _pleural_line(img, lung, a: _Anatomy, f: Finding) -> None:
    """Thin bright visceral pleural line at the collapsed lung edge (apical and lateral)."""
    sl, shrunk = _ptx_masks(lung, a, f)
    u, v = _grid(img.shape[0])
    away = _ramp(np.abs(u[:, sl[1]]) - a.med - 0.08, 0.04) * _ramp(
        a.base[SIDES.index(f.side)] - 0.2 - v[sl[0]], 0.1
    )
    img[sl] += 75.0 * (4.0 * shrunk * (1.0 - shrunk)) * lung[sl] * away


def _nodule(img, j: np.ndarray, f: Finding) -> None:
    """Small bright round lesion, jittered inside the zone (j: 3 values in [-1, 1])."""
    uc = _side_u(f.side, 0.42 + 0.1 * j[0])
    vc = ZONE_V.get(f.zone, 0.0) + 0.08 * j[1]
    r = 0.045 + 0.01 * j[2]
    size = img.shape[0]
    sl = _box(size, uc - 2 * r, uc + 2 * r, vc - 2 * r, vc + 2 * r)
    u, v = _grid(size)
    img[sl] += 90.0 * _ramp(r - np.hypot(u[:, sl[1]] - uc, v[sl[0]] - vc), 0.02)


def _device(img, f: Finding) -> None:
    """Radiopaque support devices."""
    if f.device == "ett":  # tube in the trachea, tip above the carina
        _polyline(img, [(0.0, -1.0), (0.005, -0.7), (0.0, -0.42)], 0.03, 238.0)
    elif f.device == "cvc":  # right internal jugular line, tip in the SVC
        pts = [(-0.30, -1.0), (-0.22, -0.72), (-0.09, -0.52), (-0.06, -0.22)]
        _polyline(img, pts, 0.022, 235.0)
    elif f.device == "pacemaker":  # generator over the left chest wall, lead into the heart
        lead = [(0.50, -0.66), (0.25, -0.62), (0.03, -0.45), (-0.03, 0.0), (0.06, 0.32)]
        _polyline(img, lead, 0.02, 240.0)
        _polyline(img, [(0.47, -0.70), (0.63, -0.70)], 0.13, 250.0)
    else:
        raise ValueError(f"unknown device {f.device!r}; valid: {DEVICES}")


def _finish(img: np.ndarray, aug: list[float]) -> np.ndarray:
    """Global contrast/brightness/gamma (one 256-entry LUT), then a small rotation/shift; uint8."""
    size = img.shape[0]
    levels = np.arange(256, dtype=np.float64)
    lut = (levels - 128.0) * (1.0 + 0.12 * aug[0]) + 128.0 + 12.0 * aug[1]
    lut = np.clip(lut / 255.0, 0.0, 1.0) ** (1.0 + 0.15 * aug[2]) * 255.0 + 0.5
    pix = np.clip(img, 0.0, 255.0).astype(np.uint8)
    out = Image.fromarray(pix).point(lut.astype(np.uint8).tolist())
    out = out.transform((size, size), Image.AFFINE, _affine(size, aug), Image.BILINEAR,
                        fillcolor=int(AIR))  # fmt: skip
    return np.asarray(out)


def _affine(size: int, aug: list[float]) -> tuple[float, ...]:
    """PIL AFFINE coefficients of the global small rotation/shift: output pixel (x, y) samples
    the input at the rotated, shifted position."""
    angle = np.deg2rad(3.0 * aug[3])
    c, s = float(np.cos(angle)), float(np.sin(angle))
    cx = cy = size / 2.0
    tx, ty = 0.03 * size * aug[4], 0.03 * size * aug[5]
    return (c, -s, cx - c * cx + s * cy - tx, s, c, cy - s * cx - c * cy - ty)


def _draw_lateral(rng: np.random.Generator, findings: Sequence[Finding], size: int) -> np.ndarray:
    """Simple lateral view (patient facing image left): lung field, heart anterior, spine
    posterior. Draws cardiomegaly, effusion (posterior angle) and tubes/lines; other findings
    are not rendered on laterals."""
    aug = rng.uniform(-1.0, 1.0, size=6)
    texture = _smooth_noise(rng, (size, size), 24)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    kinds = {f.kind for f in findings}
    u, v = _grid(size)
    body = _ramp(1.0 - ((u - 0.02) / 0.85) ** 4 - ((v - 0.2) / 1.05) ** 4, 0.06)
    img = AIR + (SOFT - AIR) * body
    lung = _ramp(1.0 - ((u + 0.02) / 0.62) ** 2 - ((v + 0.02) / 0.62) ** 2, 0.06)
    lung *= _ramp(0.5 + 0.08 * u - v, 0.04)  # diaphragm slopes down posteriorly
    img -= (SOFT - LUNG) * lung
    img += 14.0 * texture.clip(0.0, None) * lung
    spine = _ramp(0.11 - np.abs(u - 0.68), 0.03) * (
        0.55 + 0.45 * np.cos(v * (2 * np.pi / 0.12)) ** 2
    )
    img += 1.6 * BONE * spine
    img += BONE * _ramp(0.02 - np.abs(u + 0.66), 0.02) * _ramp(0.4 - np.abs(v + 0.1), 0.04)
    hw = 0.38 if "cardiomegaly" in kinds else 0.26
    heart = _ramp(1.0 - ((u + 0.3) / hw) ** 2 - ((v - 0.25) / 0.26) ** 2, 0.12)
    img += (HEART - img) * heart
    if "effusion" in kinds:
        img += (SOFT - img) * _ramp(v - 0.34 - 0.2 * (0.6 - u), 0.05) * lung * (u > 0.0)
    if "device" in kinds:
        _polyline(img, [(-0.2, -1.0), (-0.15, -0.5)], 0.03, 238.0)
    img += 3.0 * grain
    return _finish(img, aug)
