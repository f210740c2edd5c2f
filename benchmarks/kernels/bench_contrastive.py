"""Fused contrastive loss (LSE exchange) vs the materialized reference and open_clip-style
gather-with-grad: time of forward + backward and peak extra memory, global batch 4k-64k, d=512.

Modes
  single     one process holds the whole global batch B (world 1); baseline "reference" is the
             materialized loss (what open_clip computes at world 1).
  sim-rank   one simulated rank of --world ranks: local batch b = B / world against gathered
             (B, d) features, collectives left out. "open_clip" materializes the (b, B) logits
             with gradients flowing into the gathered features (gather_with_grad); the fused
             backends run their four tile passes (row/column LSE, row/column gradients).
  allgather  --distributed W processes (gloo on CPU, NCCL on GPU): all-gather of the (b, d)
             features (all_gather_single, formerly all_gather_into_tensor), bus bandwidth against
             a link floor (--link-gbps), and the fused loss step time in the same run.
Each (impl, B) point of single / sim-rank runs in a fresh subprocess: peak extra memory is the
ru_maxrss growth over the resident set after inputs exist (CPU), max_memory_allocated growth
(GPU). Times: median and p20/p80 of --iters runs after one warm-up (CPU; CUDA: do_bench).
Writes benchmarks/results/contrastive_<device>.{jsonl,md}.

    python benchmarks/kernels/bench_contrastive.py --mode single --batches 4096 8192 16384
    python benchmarks/kernels/bench_contrastive.py --batches 65536 --impls cpp --iters 1
    python benchmarks/kernels/bench_contrastive.py --mode sim-rank --world 16 --batches 65536
    python benchmarks/kernels/bench_contrastive.py --mode allgather --distributed 2 --batches 8192
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import RESULTS, environment, write_results  # noqa: E402

GEMMS = 6  # forward + backward GEMM-equivalents of (b x B x d), fused and materialized alike


# ------------------------------------------------------------ measurement (worker side)


def rss_mb() -> float:
    """Current resident set (MiB); also resets the kernel's peak (VmHWM) where permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak below may include earlier transients (over-estimates only)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """Peak resident set (MiB) since the last rss_mb() reset."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, iters: int, device: str) -> dict[str, float]:
    """Median / p20 / p80 seconds of fn over `iters` runs (after the caller's warm-up)."""
    if device == "cuda":
        from common import time_cuda

        return time_cuda(fn, warmup_ms=0, rep_ms=max(1, iters) * 50)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    q = statistics.quantiles(times, n=5, method="inclusive") if len(times) > 1 else times * 4
    return {"median_s": statistics.median(times), "p20_s": q[0], "p80_s": q[3]}


def make_step(cfg: dict, device: str):
    """A closure running forward + backward of one measurement point."""
    from medtrain.kernels.contrastive import get_backend
    from medtrain.losses import contrastive_loss

    n_global, world, dim, impl = cfg["batch"], cfg["world"], cfg["dim"], cfg["impl"]
    dtype = getattr(torch, cfg["dtype"])
    b = n_global // world
    g = torch.Generator(device="cpu").manual_seed(0)

    def feats(n: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, dim, generator=g), dim=-1).to(device, dtype)

    scale = torch.tensor(1 / 0.07, device=device, requires_grad=True)
    if cfg["mode"] == "single":
        img = feats(n_global).requires_grad_()  # (B, d)
        txt = feats(n_global).requires_grad_()  # (B, d)

        def step() -> None:
            contrastive_loss(img, txt, scale, impl=impl).backward()
            img.grad = txt.grad = scale.grad = None

        return step

    # One simulated rank (rank 0) of `world`: local rows + the other ranks' gathered rows.
    img_loc, txt_loc = feats(b).requires_grad_(), feats(b).requires_grad_()  # (b, d)
    img_rest, txt_rest = feats(n_global - b), feats(n_global - b)  # (B - b, d)
    if impl == "open_clip":
        img_rest.requires_grad_()
        txt_rest.requires_grad_()
        labels = torch.arange(b, device=device)

        def step() -> None:
            img_all = torch.cat([img_loc, img_rest])  # (B, d), gather_with_grad
            txt_all = torch.cat([txt_loc, txt_rest])
            s = scale.float()
            per_image = s * img_loc.float() @ txt_all.float().T  # (b, B)
            per_text = s * txt_loc.float() @ img_all.float().T  # (b, B)
            loss = (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
            loss.backward()
            for t in (img_loc, txt_loc, img_rest, txt_rest, scale):
                t.grad = None

        return step

    backend = get_backend(impl)
    img_all = torch.cat([img_loc.detach(), img_rest])  # (B, d), gathered without autograd
    txt_all = torch.cat([txt_loc.detach(), txt_rest])
    s = scale.detach()

    def step() -> None:
        r = backend.lse_rows(img_loc.detach(), txt_all, s)  # (b,) pass A
        c = backend.lse_rows(txt_loc.detach(), img_all, s)  # (b,) pass B
        # Other ranks' LSEs would arrive by all-gather; reuse ours tiled to (B,) for timing.
        r_all, c_all = r.repeat(world), c.repeat(world)
        backend.grad_rows(img_loc.detach(), txt_all, s, r, c_all, 0)
        backend.grad_rows(txt_loc.detach(), img_all, s, c, r_all, 0)

    return step


def worker(cfg: dict) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    warm = make_step({**cfg, "batch": 64 * cfg["world"]}, device)
    for _ in range(2):  # one-time costs (library loads, thread pools) stay out of the peak
        warm()
    step = make_step(cfg, device)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()  # also the warm-up
        torch.cuda.synchronize()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = rss_mb()
        step()  # also the warm-up
        peak_mb = peak_rss_mb() - base
    t = timed(step, cfg["iters"], device)
    # The 1-minute load average tells how contended a shared CPU machine was.
    return {**t, "peak_extra_mb": round(peak_mb, 1), "loadavg_1m": os.getloadavg()[0]}


# ------------------------------------------------------------ all-gather (distributed)


def _allgather_rank(rank: int, world: int, init: str, cfg: dict, out: str) -> None:
    import torch.distributed as dist

    from medtrain.kernels.contrastive.function import all_gather_flat
    from medtrain.losses import contrastive_loss

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"file://{init}", rank=rank, world_size=world
    )
    device = "cuda" if cuda else "cpu"
    dtype = getattr(torch, cfg["dtype"])
    records = []
    try:
        for n_global in cfg["batches"]:
            b = n_global // world
            x = torch.randn(b, cfg["dim"], device=device).to(dtype)  # (b, d)
            y = x.new_empty(world * b, cfg["dim"])  # (B, d)
            gather = lambda x=x, y=y: all_gather_flat(y, x)
            gather()
            t_gather = timed(gather, cfg["iters"] * 5, device)
            img = F.normalize(torch.randn(b, cfg["dim"], device=device), dim=-1).to(dtype)
            txt = F.normalize(torch.randn(b, cfg["dim"], device=device), dim=-1).to(dtype)
            img.requires_grad_()
            txt.requires_grad_()
            scale = torch.tensor(1 / 0.07, device=device, requires_grad=True)

            def step(img=img, txt=txt, scale=scale) -> None:
                contrastive_loss(img, txt, scale, impl=cfg["impl"]).backward()

            step()
            t_step = timed(step, cfg["iters"], device)
            nbytes = world * b * cfg["dim"] * x.element_size()  # gathered size
            busbw = nbytes * (world - 1) / world / t_gather["median_s"] / 1e9
            rec = {
                "batch": n_global,
                "local_batch": b,
                "gather_bytes": nbytes,
                "gather": t_gather,
                "busbw_gbps": round(busbw, 2),
                "step": t_step,
            }
            if cfg["link_gbps"]:
                floor = nbytes * (world - 1) / world / (cfg["link_gbps"] * 1e9)
                rec["floor_s"] = floor
                rec["gather_over_floor"] = round(t_gather["median_s"] / floor, 2)
            records.append(rec)
        if rank == 0:
            Path(out).write_text(json.dumps(records))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def copy_bandwidth_gbps(nbytes: int = 256 * 2**20) -> float:
    """Shared-memory copy bandwidth: the floor of a single-host CPU all-gather."""
    a = torch.empty(nbytes, dtype=torch.uint8)
    b = torch.empty_like(a)
    b.copy_(a)
    t = time.perf_counter()
    for _ in range(5):
        b.copy_(a)
    return 5 * nbytes / (time.perf_counter() - t) / 1e9


# ------------------------------------------------------------ driver


def fits(cfg: dict) -> tuple[bool, str]:
    """Whether a materialized point fits in memory (about 8 fp32 (b, B) buffers at peak)."""
    if cfg["impl"] not in ("reference", "open_clip"):
        return True, ""
    need = 8 * (cfg["batch"] // cfg["world"]) * cfg["batch"] * 4
    if torch.cuda.is_available():
        avail = torch.cuda.mem_get_info()[0]
    else:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        avail = int(info["MemAvailable"].split()[0]) * 1024
    ok = need < 0.6 * avail
    return ok, "" if ok else f"needs ~{need / 2**30:.0f} GiB, {avail / 2**30:.0f} GiB available"


def run_point(cfg: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed for {cfg}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(env: dict, records: list[dict], args, dtype: str) -> str:
    lines = [
        f"# Contrastive loss: fused (LSE exchange) vs materialized ({env['device']})",
        "",
        f"{env['date']}, torch {env['torch']}, threads {torch.get_num_threads()}, "
        f"d={args.dim}, {dtype}; script `benchmarks/kernels/bench_contrastive.py`.",
        "Time: forward + backward, median [p20, p80]. Memory: peak extra over the inputs "
        "(CPU: resident set, GPU: allocator). Ratio: time / baseline time at the same B. "
        "Load: 1-minute load average after the point (CPU machines shared with other jobs).",
        "",
    ]
    point = [r for r in records if r["mode"] != "allgather"]
    for mode in ("single", "sim-rank"):
        rows = [r for r in point if r["mode"] == mode]
        if not rows:
            continue
        base_impl = "reference" if mode == "single" else "open_clip"
        base = {(r["batch"], r["world"]): r for r in rows if r["impl"] == base_impl}
        lines += [
            f"## {mode}"
            + (
                " (one process, whole batch)"
                if mode == "single"
                else " (one of `world` ranks, collectives excluded)"
            ),
            "",
            "| B | world | b | impl | time s | TFLOP/s | peak extra MiB | vs "
            + base_impl
            + " | load |",
            "|---:|---:|---:|---|---|---:|---:|---:|---:|",
        ]
        for r in sorted(rows, key=lambda r: (r["batch"], r["world"], r["impl"])):
            if "skipped" in r:
                lines.append(
                    f"| {r['batch']} | {r['world']} | {r['local_batch']} | {r['impl']} | "
                    f"skipped: {r['skipped']} | | | | |"
                )
                continue
            ref = base.get((r["batch"], r["world"]))
            ratio = (
                f"{r['median_s'] / ref['median_s']:.2f}x"
                if ref and "median_s" in ref and r is not ref
                else ""
            )
            lines.append(
                f"| {r['batch']} | {r['world']} | {r['local_batch']} | {r['impl']} | "
                f"{r['median_s']:.3f} [{r['p20_s']:.3f}, {r['p80_s']:.3f}] | {r['tflops']:.3f} | "
                f"{r['peak_extra_mb']:.0f} | {ratio} | {r.get('loadavg_1m', float('nan')):.1f} |"
            )
        lines.append("")
    gathers = [r for r in records if r["mode"] == "allgather"]
    if gathers:
        lines += [
            "## all-gather of the features (distributed)",
            "",
            "| world | B | bytes | gather s | bus GB/s | floor s | gather / floor | loss step s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in gathers:
            lines.append(
                f"| {r['world']} | {r['batch']} | {r['gather_bytes']} | "
                f"{r['gather']['median_s']:.5f} | {r['busbw_gbps']} | "
                f"{r.get('floor_s', float('nan')):.5f} | {r.get('gather_over_floor', '')} | "
                f"{r['step']['median_s']:.3f} |"
            )
        lines += ["", f"Floor: {gathers[0]['floor_note']}", ""]
    return "\n".join(lines) + "\n"


def load_existing(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("single", "sim-rank", "allgather"), default="single")
    p.add_argument("--batches", type=int, nargs="+", default=[4096, 8192, 16384])
    p.add_argument("--impls", nargs="+", default=None, help="default: baseline + fused backends")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on GPU")
    p.add_argument("--world", type=int, default=8, help="sim-rank: simulated world size")
    p.add_argument("--distributed", type=int, default=2, help="allgather: processes")
    p.add_argument(
        "--link-gbps",
        type=float,
        default=None,
        help="allgather: link bandwidth floor in GB/s (CPU: measured memcpy)",
    )
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    cuda = torch.cuda.is_available()
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    env = environment()
    tag = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-")
    name = f"contrastive_{'gpu' if cuda else 'cpu'}_{tag}"
    fused = ["triton", "cpp"] if cuda else ["cpp"]
    records = []
    if args.mode == "allgather":
        import tempfile

        import torch.multiprocessing as mp

        link, note = args.link_gbps, f"--link-gbps {args.link_gbps} GB/s"
        if link is None and not cuda:
            link = copy_bandwidth_gbps()
            note = f"single-host memcpy bandwidth {link:.1f} GB/s (gloo over shared memory)"
        cfg = {
            "batches": args.batches,
            "dim": args.dim,
            "dtype": dtype,
            "iters": args.iters,
            "impl": (args.impls or fused)[0],
            "link_gbps": link,
        }
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "out.json")
            mp.spawn(
                _allgather_rank,
                args=(args.distributed, str(Path(tmp) / "store"), cfg, out),
                nprocs=args.distributed,
                join=True,
            )
            for rec in json.loads(Path(out).read_text()):
                records.append(
                    {
                        "name": "contrastive_allgather",
                        "mode": "allgather",
                        "world": args.distributed,
                        "dim": args.dim,
                        "dtype": dtype,
                        "impl": cfg["impl"],
                        "floor_note": note,
                        **env,
                        **rec,
                    }
                )
    else:
        impls = args.impls or (["reference"] if args.mode == "single" else ["open_clip"]) + fused
        world = 1 if args.mode == "single" else args.world
        for n_global in args.batches:
            for impl in impls:
                cfg = {
                    "mode": args.mode,
                    "batch": n_global,
                    "world": world,
                    "dim": args.dim,
                    "dtype": dtype,
                    "impl": impl,
                    "iters": args.iters,
                }
                rec = {"name": "contrastive", **cfg, "local_batch": n_global // world, **env}
                ok, why = fits(cfg)
                if not ok:
                    rec["skipped"] = why
                else:
                    rec.update(run_point(cfg))
                    flops = GEMMS * 2 * (n_global // world) * n_global * args.dim
                    rec["tflops"] = flops / rec["median_s"] / 1e12
                    rec["samples_per_s"] = n_global / world / rec["median_s"]
                print(
                    json.dumps(
                        {
                            k: rec.get(k)
                            for k in (
                                "mode",
                                "batch",
                                "world",
                                "impl",
                                "median_s",
                                "peak_extra_mb",
                                "skipped",
                            )
                        }
                    ),
                    flush=True,
                )
                records.append(rec)

    # One report per device covering every run so far (the JSONL accumulates).
    jsonl = RESULTS / f"{name}.jsonl"
    everything = load_existing(jsonl) + records
    latest = {}
    for r in everything:  # newest record per point
        key = (r["mode"], r.get("batch"), r.get("world"), r.get("impl"), r.get("dim"))
        latest[key] = r
    write_results(name, records, markdown(env, list(latest.values()), args, dtype))
    print(f"wrote {jsonl} and {RESULTS / (name + '.md')} ({dt.datetime.now():%H:%M})")


if __name__ == "__main__":
    main()
