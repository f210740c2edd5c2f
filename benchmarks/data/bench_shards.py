"""Tar-shard write/read throughput, stored-image format sizes, and enumeration memory.

write   `prepare_shards` from 2500 x 3000 JPEG (8-bit PNG out) and 12-bit DICOM (16-bit PNG
        out) sources, 1 and 2 writer processes: samples/s, MB/s of shards written
read    one loader consumer (no DataLoader workers, one thread): raw tar MB/s, and decoded
        samples/s per contrast setting
format  bytes and decode time of one 512 px sample as PNG 8/16-bit (zlib 1 and 6) and .npy
memory  peak RSS of the record-enumeration path (`prepare --dry-run`) in a subprocess over a
        generated MIMIC-style metadata CSV of --enum-rows rows (no images), and of the
        planning layer alone over a streamed synthetic record source

  python benchmarks/data/bench_shards.py --n 48 --enum-rows 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_images import radiograph, write_inputs  # noqa: E402
from common import environment, time_fn, write_results  # noqa: E402

from medtrain.data.images import ImageConfig, decode_png, encode_png  # noqa: E402
from medtrain.data.records import Record  # noqa: E402
from medtrain.data.config import ShardConfig  # noqa: E402
from medtrain.data.shards.manifest import read_manifest  # noqa: E402
from medtrain.data.shards.write import prepare_shards  # noqa: E402
from medtrain.data.shards.read import ShardStream, iter_tar_samples  # noqa: E402

REPORT = (
    "FINDINGS: The lungs are clear without focal consolidation, effusion or pneumothorax. "
    "The cardiomediastinal silhouette is within normal limits. No acute osseous abnormality. "
    "IMPRESSION: No acute cardiopulmonary process."
)


def records(path: Path, n: int, kind: str = "") -> list[Record]:
    return [
        Record(id=f"{kind or 'jpg'}{i:05d}", image_path=path, report=REPORT, image_kind=kind)
        for i in range(n)
    ]


def startup_seconds(src: Path, out: Path) -> float:
    """Wall time of a 2-worker prepare of 2 samples: process spawn + imports dominate."""
    cfg = ShardConfig(shard_size=1, image_size=512, workers=2)
    t0 = time.perf_counter()
    prepare_shards(source="bench", root=out, out=out / "startup", cfg=cfg, records=records(src, 2))
    return time.perf_counter() - t0


def bench_write(src: dict[str, Path], out: Path, n: int, env: dict) -> list[dict]:
    rows = []
    startup = startup_seconds(src["jpeg"], out)
    for fmt, count in (("jpeg", n), ("dicom", max(8, n // 3))):
        for workers in (1, 2):
            target = out / f"{fmt}-w{workers}"
            cfg = ShardConfig(shard_size=8, image_size=512, workers=workers)
            recs = records(src[fmt], count, "dicom" if fmt == "dicom" else "")
            t0 = time.perf_counter()
            s = prepare_shards(source="bench", root=out, out=target, cfg=cfg, records=recs)
            dt = time.perf_counter() - t0
            rows.append(
                {
                    "name": "shard_write",
                    "config": {"input": fmt, "workers": workers, "samples": s["samples"]},
                    **env,
                    "median_s": dt,
                    "samples_per_s": s["samples"] / dt,
                    "mb_per_s": s["bytes"] / dt / 1e6,
                    "bytes_per_sample": s["bytes"] / s["samples"],
                    "startup_s": startup if workers > 1 else 0.0,
                }
            )
            print(rows[-1]["config"], f"{rows[-1]['samples_per_s']:.1f} samples/s", flush=True)
    return rows


def bench_read(shards: Path, env: dict, label: str) -> list[dict]:
    rows = []
    m = read_manifest(shards)
    total_bytes = sum(s["bytes"] for s in m.shards)
    t0 = time.perf_counter()
    stats = {"corrupt": 0, "rejected": 0}
    n = sum(1 for s in m.shards for _ in iter_tar_samples(shards / s["name"], stats))
    dt = time.perf_counter() - t0
    rows.append(
        {
            "name": "shard_read_raw",
            "config": {"shards": label},
            **env,
            "median_s": dt,
            "samples_per_s": n / dt,
            "mb_per_s": total_bytes / dt / 1e6,
        }
    )
    configs = {
        "none": ImageConfig(),
        "clahe": ImageConfig(lcn="clahe"),
        "gaussian": ImageConfig(lcn="gaussian"),
        "gaussian-on-gpu": ImageConfig(lcn="gaussian", lcn_device="gpu"),
    }
    for lcn, cfg in configs.items():
        stream = ShardStream(shards, image_size=512, image=cfg, seed=0, buffer=16)
        it = iter(stream)
        next(it)
        t0 = time.perf_counter()
        for _ in range(m.total):
            next(it)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "name": "shard_read_decode",
                "config": {"shards": label, "lcn": lcn},
                **env,
                "median_s": dt,
                "samples_per_s": m.total / dt,
                "mb_per_s": total_bytes / dt / 1e6,
            }
        )
        print(rows[-1]["config"], f"{rows[-1]['samples_per_s']:.1f} samples/s", flush=True)
    return rows


def bench_formats(env: dict) -> list[dict]:
    x = cv2.resize(radiograph(1), (427, 512), interpolation=cv2.INTER_AREA)
    square = np.zeros((512, 512), np.float32)
    square[:, 42:469] = x
    rows = []
    for bits, level in ((8, 1), (8, 6), (16, 1), (16, 6)):
        t = time_fn(lambda b=bits, lv=level: encode_png(square, b, lv), warmup=1, iters=5)
        data = encode_png(square, bits, level)
        d = time_fn(lambda data=data: decode_png(data, 512, ImageConfig()), warmup=1, iters=10)
        rows.append(
            {
                "name": "stored_format",
                "config": {"format": f"png{bits}", "zlib": level},
                **env,
                **d,
                "bytes": len(data),
                "encode_ms": t["median_s"] * 1e3,
            }
        )
    buf = io.BytesIO()
    np.save(buf, (square * 255).round().astype(np.uint8))
    data = buf.getvalue()
    d = time_fn(lambda: np.load(io.BytesIO(data)).astype(np.float32) / 255.0, warmup=1, iters=10)
    rows.append(
        {
            "name": "stored_format",
            "config": {"format": "npy8", "zlib": 0},
            **env,
            **d,
            "bytes": len(data),
            "encode_ms": 0.0,
        }
    )
    return rows


# ------------------------------------------------------------------------------- memory

_GEN = """
import csv, gzip, sys
from pathlib import Path
from medtrain.synth.layouts.mimic_cxr import LABEL_COLUMNS, METADATA_COLUMNS, SPLIT_COLUMNS
n, out = int(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
def w(name):
    return gzip.open(out / name, "wt", compresslevel=1, newline="")
with w("mimic-cxr-2.0.0-metadata.csv.gz") as m, w("mimic-cxr-2.0.0-split.csv.gz") as s, \\
        w("mimic-cxr-2.0.0-chexpert.csv.gz") as c:
    m, s, c = csv.writer(m), csv.writer(s), csv.writer(c)
    m.writerow(METADATA_COLUMNS); s.writerow(SPLIT_COLUMNS); c.writerow(LABEL_COLUMNS)
    for i in range(n):  # ~2 images per study, ~3 studies per subject, like MIMIC
        subj, study = 10000000 + i // 6, 50000000 + i // 2
        dicom = f"{i:08x}-{i * 7 % 99999999:08x}-{i * 13 % 99999999:08x}-{i * 31:08x}-0000"
        m.writerow([dicom, subj, study, "CHEST (PA AND LAT)", "PA", 3000, 2500, "21800101",
                    "120000.000", "CHEST (PA AND LAT)", "postero-anterior", "Erect"])
        s.writerow([dicom, study, subj, "train"])
        if i % 2 == 0:
            c.writerow([subj, study] + ["1.0", "", "0.0", "-1.0"] * 3 + ["", "1.0"])
"""

# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child started by this (large)
# benchmark process would report the parent's peak.
_HWM = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

_ENUM = (
    _HWM
    + """
import json, sys, time
from medtrain.data.config import ShardConfig
from medtrain.data.shards.write import prepare_shards
t = time.perf_counter()
s = prepare_shards(source="mimic-cxr-jpg", root=sys.argv[1], out="/nonexistent", split="train",
                   cfg=ShardConfig(shard_size=1000), dry_run=True)
s["peak_rss_mb"] = peak_rss_mb()
s["wall_s"] = time.perf_counter() - t
print(json.dumps(s))
"""
)

_PLAN = (
    _HWM
    + """
import json, sys, time
from pathlib import Path
from medtrain.data.records import Record
from medtrain.data.config import ShardConfig
from medtrain.data.shards.write import plan_shards
n, report = int(sys.argv[1]), sys.argv[2]
def stream():
    for i in range(n):
        yield Record(id=f"{i:040x}", image_path=Path(f"/img/{i}.jpg"), report=report * 4,
                     labels={"Edema": 1.0, "No Finding": None}, split="train")
t = time.perf_counter()
jobs = sum(1 for _ in plan_shards(stream(), ShardConfig(shard_size=1000, window_shards=16)))
print(json.dumps({"jobs": jobs, "records": n, "wall_s": time.perf_counter() - t,
                  "peak_rss_mb": peak_rss_mb()}))
"""
)


def _py(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}


def bench_memory(rows_list: list[int], tmp: Path, env: dict) -> list[dict]:
    rows = []
    baseline = _py(
        _HWM
        + "import json, medtrain.data.shards.write\nprint(json.dumps({'peak_rss_mb': peak_rss_mb()}))"
    )
    for n in rows_list:
        folder = tmp / f"mimic-{n}"
        _py(_GEN + "\nprint('{}')", str(n), str(folder))
        r = _py(_ENUM, str(folder))
        rows.append(
            {
                "name": "enumerate_mimic_reader",
                "config": {"rows": n},
                **env,
                "peak_rss_mb": r["peak_rss_mb"],
                "import_rss_mb": baseline["peak_rss_mb"],
                "wall_s": r["wall_s"],
                "reader_skipped": r["reader_skipped"],
            }
        )
        print(rows[-1]["config"], f"{r['peak_rss_mb']:.0f} MB", flush=True)
        r = _py(_PLAN, str(n), REPORT)
        rows.append(
            {
                "name": "plan_streamed_source",
                "config": {"rows": n},
                **env,
                "peak_rss_mb": r["peak_rss_mb"],
                "import_rss_mb": baseline["peak_rss_mb"],
                "wall_s": r["wall_s"],
            }
        )
        print(rows[-1]["config"], f"{r['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def growth_notes(rows: list[dict]) -> list[str]:
    """Peak-RSS growth per enumerated row between the smallest and largest row counts."""
    notes = []
    for name, what in (
        ("enumerate_mimic_reader", "`prepare --dry-run` with the MIMIC-CXR reader"),
        ("plan_streamed_source", "the shard planner over a streamed source"),
    ):
        mem = sorted((r["config"]["rows"], r["peak_rss_mb"]) for r in rows if r["name"] == name)
        if len(mem) >= 2 and mem[-1][0] > mem[0][0]:
            per_row = (mem[-1][1] - mem[0][1]) * 1024 / (mem[-1][0] - mem[0][0])
            notes.append(
                f"- {what}: {per_row:.3f} KB of peak RSS per extra row "
                f"({mem[0][0]:,} -> {mem[-1][0]:,} rows)."
            )
    if notes:
        notes = ["", "Enumeration memory growth:", *notes]
    return notes


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=48, help="samples per write benchmark (JPEG)")
    p.add_argument("--enum-rows", type=int, nargs="*", default=[250_000, 1_000_000])
    args = p.parse_args()
    env = environment()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    records_out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = write_inputs(tmp)
        records_out += bench_write(src, tmp, args.n, env)
        records_out += bench_read(tmp / "jpeg-w1", env, "png8 from jpeg")
        records_out += bench_read(tmp / "dicom-w1", env, "png16 from dicom")
        records_out += bench_formats(env)
        records_out += bench_memory(args.enum_rows, tmp, env)
    lines = [
        "# Tar shards: write / read throughput, stored format, enumeration memory",
        "",
        f"{env['device']}, torch {env['torch']}, OpenCV {cv2.__version__}, {env['date']}. "
        "2500x3000 synthetic radiograph sources (one file reused per record), 512 px output, "
        "one OpenCV/torch thread per process; a 2-core machine shared with other jobs, so "
        "2-worker numbers are a lower bound.",
        "",
        "| measurement | config | samples/s | MB/s | notes |",
        "|---|---|---|---|---|",
    ]
    for r in records_out:
        cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items())
        if r["name"] in ("shard_write", "shard_read_raw", "shard_read_decode"):
            note = ""
            if "bytes_per_sample" in r:
                note = f"{r['bytes_per_sample'] / 1e3:.0f} kB/sample"
            if r.get("startup_s"):
                steady = r["config"]["samples"] / max(r["median_s"] - r["startup_s"], 1e-9)
                note += f"; incl. {r['startup_s']:.1f} s worker start-up, ~{steady:.1f}/s without"
            lines.append(
                f"| {r['name']} | {cfg} | {r['samples_per_s']:.1f} | {r['mb_per_s']:.1f} | {note} |"
            )
        elif r["name"] == "stored_format":
            lines.append(
                f"| {r['name']} | {cfg} | {1 / r['median_s']:.0f} (decode) | | "
                f"{r['bytes'] / 1e3:.0f} kB, encode {r['encode_ms']:.1f} ms |"
            )
        else:
            rss, base = r["peak_rss_mb"], r["import_rss_mb"]
            lines.append(
                f"| {r['name']} | {cfg} | | | peak RSS {rss:.0f} MB (after imports "
                f"{base:.0f} MB), {r['wall_s']:.1f} s |"
            )
    lines += growth_notes(records_out)
    jsonl, md = write_results("data_shards", records_out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {jsonl}, {md}")


if __name__ == "__main__":
    main()
