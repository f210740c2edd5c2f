"""Image preprocessing throughput per CPU core: decode + fit to 512 + local contrast.

Inputs are 2500 x 3000 synthetic chest X-rays (phantom upscaled, with film-grain noise) stored
as JPEG (q 92), 16-bit PNG and uncompressed 12-bit DICOM. Every pipeline runs with one OpenCV /
torch thread, so images/s is per core. Also: the stages alone on a 512 px image, the decode of
the PNGs a shard stores, and the batched torch Gaussian LCN on the CPU.

    python benchmarks/data/bench_images.py --iters 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, time_fn, write_results  # noqa: E402

from medtrain.data.images import (  # noqa: E402
    ImageConfig,
    decode_png,
    encode_png,
    finish,
    load_image,
    read_fitted,
)
from medtrain.data.lcn import gaussian_lcn  # noqa: E402
from medtrain.synth.phantom import draw_phantom  # noqa: E402

H, W = 3000, 2500
LCN_CONFIGS = {
    "none": ImageConfig(),
    "clahe": ImageConfig(lcn="clahe"),
    "gaussian": ImageConfig(lcn="gaussian"),
    "gaussian-on-gpu": ImageConfig(lcn="gaussian", lcn_device="gpu"),  # worker part only
}


def radiograph(seed: int = 0) -> np.ndarray:
    """(3000, 2500) float in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = draw_phantom(rng, [], 512).astype(np.float32) / 255.0
    big = cv2.resize(base, (W, H), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), 1.5)
    return np.clip(big + 0.02 * grain, 0, 1)


def write_inputs(folder: Path) -> dict[str, Path]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    x = radiograph()
    paths = {"jpeg": folder / "cxr.jpg", "png16": folder / "cxr.png", "dicom": folder / "cxr.dcm"}
    Image.fromarray((x * 255).round().astype(np.uint8)).save(paths["jpeg"], quality=92)
    cv2.imwrite(str(paths["png16"]), (x * 65535).round().astype(np.uint16))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.SamplesPerPixel = H, W, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = (x * 4095).round().astype("<u2").tobytes()
    ds.save_as(paths["dicom"], enforce_file_format=True)
    return paths


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=16, help="torch LCN batch")
    args = p.parse_args()
    env = environment()
    all_threads = torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    records = []

    def record(name: str, config: dict, t: dict, per_call: int = 1) -> None:
        r = {"name": name, "config": config, **env, **t, "images_per_s": per_call / t["median_s"]}
        records.append(r)
        print(f"{name} {config}: {r['images_per_s']:.1f} images/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_inputs(Path(tmp))
        sizes = {k: v.stat().st_size for k, v in paths.items()}
        for fmt, path in paths.items():  # full pipeline from the original file
            for lcn, cfg in LCN_CONFIGS.items():
                t = time_fn(
                    lambda path=path, cfg=cfg: load_image(path, args.size, cfg),
                    warmup=args.warmup,
                    iters=args.iters,
                )
                record(
                    "file_to_input",
                    {"input": fmt, "lcn": lcn, "size": args.size, "file_mb": sizes[fmt] / 1e6},
                    t,
                )
        for fmt, path in paths.items():  # decode + fit only
            t = time_fn(
                lambda path=path: read_fitted(path, args.size, ImageConfig()),
                warmup=args.warmup,
                iters=args.iters,
            )
            record("decode_fit", {"input": fmt, "size": args.size}, t)

    x = cv2.resize(radiograph(), (args.size * 5 // 6, args.size), interpolation=cv2.INTER_AREA)
    square = np.zeros((args.size, args.size), np.float32)
    square[:, : x.shape[1]] = x
    for lcn in ("clahe", "gaussian"):  # contrast stage alone on a fitted image
        cfg = LCN_CONFIGS[lcn]
        t = time_fn(lambda cfg=cfg: finish(square, cfg), warmup=args.warmup, iters=args.iters * 4)
        record("lcn_only", {"lcn": lcn, "size": args.size}, t)
    for bits in (8, 16):  # what a training worker does per shard sample
        data = encode_png(square, bits)
        for lcn in ("none", "clahe", "gaussian"):
            cfg = LCN_CONFIGS[lcn]
            t = time_fn(
                lambda data=data, cfg=cfg: decode_png(data, args.size, cfg),
                warmup=args.warmup,
                iters=args.iters * 4,
            )
            record("shard_png_to_input", {"bits": bits, "lcn": lcn, "png_kb": len(data) / 1e3}, t)
    batch = torch.from_numpy(square)[None, None].repeat(args.batch, 1, 1, 1)  # (B, 1, S, S)
    for threads in sorted({1, all_threads}):
        torch.set_num_threads(threads)
        t = time_fn(lambda: gaussian_lcn(batch, 8.0, 0.01), warmup=1, iters=args.iters)
        record(
            "torch_gaussian_lcn_cpu",
            {"batch": args.batch, "size": args.size, "threads": threads},
            t,
            per_call=args.batch,
        )

    lines = [
        "# Image preprocessing throughput (per CPU core)",
        "",
        f"{env['device']}, torch {env['torch']}, OpenCV {cv2.__version__}, {env['date']}. "
        f"Inputs {W}x{H} synthetic radiographs -> {args.size} px (pad); one OpenCV/torch thread "
        f"unless stated; median of {args.iters} (stages alone: {args.iters * 4}). "
        "`gaussian-on-gpu` = the worker's share when LCN runs on the training device.",
        "",
        "| measurement | config | images/s | median ms | p20-p80 ms |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        cfg = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r["config"].items()
        )
        lines.append(
            f"| {r['name']} | {cfg} | {r['images_per_s']:.1f} | {r['median_s'] * 1e3:.1f} "
            f"| {r['p20_s'] * 1e3:.1f}-{r['p80_s'] * 1e3:.1f} |"
        )
    jsonl, md = write_results("data_images", records, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {jsonl}, {md}")


if __name__ == "__main__":
    main()
