"""Fused cross-modal attention kernel vs eager, SDPA backends and flash-attn (GPU).

Sweeps head dim D, query length Lq (fixed, or ragged report lengths from a long-tailed
distribution: mean ~90 tokens, max 256) and key length Lk (image tokens), forward and
forward + backward, text -> image (q_lens ragged, every key valid). Hidden size is held at 768
(H = 768 / D) and the batch fills the GPU with ~16k query rows. Timing: triton.testing.do_bench
(CUDA events, after warm-up), median and p20/p80. TFLOP/s count useful work only
(4 * H * D * sum_b q_len_b * Lk forward, 2.5x that backward), against the bf16 dense peak and a
roofline cap min(peak, FLOPs / minimal HBM bytes * bandwidth). Writes JSON lines and a Markdown
report to benchmarks/results/attention_kernel_<gpu>.{jsonl,md} (+ a PNG when matplotlib exists).

    python benchmarks/kernels/bench_attention.py                 # full sweep, bf16 (GPU)
    python benchmarks/kernels/bench_attention.py --dims 64 --lk 1024 --modes fwd+bwd
    python benchmarks/kernels/bench_attention.py --smoke         # CPU: tiny interpreter run

On a machine without a GPU the script exits 0 with a message, unless --smoke is given: that runs
a tiny shape in Triton's interpreter, checks it against eager and prints (does not write) times.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import RESULTS, environment, time_cuda, time_fn, write_results  # noqa: E402

# bf16 dense tensor-core peak and HBM bandwidth by device name; anything else is "unknown".
GPU_SPECS = {  # name pattern: (TFLOP/s, TB/s)
    r"H200": (989.0, 4.8),
    r"H100.*(SXM|HBM3)": (989.0, 3.35),
}
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
FUSED_SDPA = ("sdpa-flash", "sdpa-efficient", "sdpa-cudnn")  # the baselines for "vs best SDPA"
HIDDEN, TARGET_ROWS = 768, 16384


def gpu_specs(name: str) -> tuple[float | None, float | None]:
    for pattern, spec in GPU_SPECS.items():
        if re.search(pattern, name):
            return spec
    return None, None


def report_lengths(n: int, g: torch.Generator, mean: float = 90.0, max_len: int = 256):
    """Long-tailed (log-normal, sigma 0.6) report lengths with the given mean, in [8, max_len]."""
    sigma = 0.6
    mu = math.log(mean) - sigma**2 / 2
    lens = torch.exp(mu + sigma * torch.randn(n, generator=g)).round().clamp(8, max_len)
    return lens.to(torch.int32)


def providers(device: str) -> dict[str, Callable]:
    """name -> attend(q, k, v, q_lens=...) for every implementation available here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from medtrain.kernels.attention import cross_attention
    from medtrain.models.attention import eager_attention, sdpa_attention

    out: dict[str, Callable] = {"eager": eager_attention}
    backends = SDPA_BACKENDS if device == "cuda" else ("MATH",)

    def with_backend(backend) -> Callable:
        def sdpa(q, k, v, *, q_lens=None):
            with sdpa_kernel(backend):
                return sdpa_attention(q, k, v, q_lens=q_lens)

        return sdpa

    for name in backends:
        key = f"sdpa-{name.lower().replace('_attention', '')}"
        out[key] = with_backend(getattr(SDPBackend, name))
    out["ours"] = cross_attention
    if device == "cuda":
        try:
            from flash_attn import flash_attn_varlen_func
        except ImportError:
            pass
        else:
            out["flash-attn"] = flash_attn_varlen(flash_attn_varlen_func)
    return out


def flash_attn_varlen(fn: Callable) -> Callable:
    """flash-attn on packed valid query rows (packing done outside the timed region)."""
    cache: dict[tuple, tuple] = {}

    def attend(q, k, v, *, q_lens=None):
        B, H, Lq, D = q.shape
        key = (q.data_ptr(), k.data_ptr())
        if key not in cache:
            lens = q_lens if q_lens is not None else torch.full((B,), Lq, device=q.device)
            keep = torch.arange(Lq, device=q.device)[None, :] < lens[:, None]  # (B, Lq)
            qp = q.detach().transpose(1, 2)[keep].requires_grad_(q.requires_grad)  # (Tq, H, D)
            kp, vp = (
                t.detach().transpose(1, 2).reshape(-1, H, D).requires_grad_(t.requires_grad)
                for t in (k, v)
            )  # (B * Lk, H, D)
            zero = torch.zeros(1, device=q.device, dtype=torch.int32)
            cu_q = torch.cat([zero, lens.cumsum(0).to(torch.int32)])
            cu_k = torch.arange(B + 1, device=q.device, dtype=torch.int32) * k.shape[2]
            cache.clear()
            cache[key] = (qp, kp, vp, cu_q, cu_k, int(lens.max()), k.shape[2])
        qp, kp, vp, cu_q, cu_k, max_q, max_k = cache[key]
        return fn(qp, kp, vp, cu_q, cu_k, max_q, max_k, softmax_scale=q.shape[-1] ** -0.5)

    attend.packed_leaves = lambda: next(iter(cache.values()))[:3]
    return attend


def make_case(B, H, Lq, Lk, D, dtype, device, q_lens):
    g = torch.Generator(device="cpu").manual_seed(B * 7919 + Lq * 31 + Lk + D)
    q, k, v, do = (torch.randn(B, H, n, D, generator=g).to(device, dtype) for n in (Lq, Lk, Lk, Lq))
    for t in (q, k, v):
        t.requires_grad_(True)
    return q, k, v, do, None if q_lens is None else q_lens.to(device)


def step_fn(attend: Callable, mode: str, q, k, v, do, q_lens) -> Callable[[], None]:
    def fwd():
        with torch.no_grad():
            attend(q, k, v, q_lens=q_lens)

    def fwd_bwd():
        o = attend(q, k, v, q_lens=q_lens)
        leaves = getattr(attend, "packed_leaves", lambda: (q, k, v))()
        torch.autograd.grad(o, leaves, do if o.shape == do.shape else torch.ones_like(o))

    return fwd if mode == "fwd" else fwd_bwd


def min_bytes(B, H, Lq, Lk, D, elem: int, mode: str, rows: int) -> int:
    """Compulsory HBM traffic: read Q, K, V, write O (+ LSE); backward adds O, dO, dQ, dK, dV."""
    q_bytes, kv_bytes = rows * H * D * elem, B * H * Lk * D * elem
    fwd = 2 * q_bytes + 2 * kv_bytes + rows * H * 4
    return fwd if mode == "fwd" else fwd + 4 * q_bytes + 4 * kv_bytes + rows * H * 8


def sweep(args) -> list[dict]:
    env = environment()
    device_name = env["device"]
    peak, bandwidth = gpu_specs(device_name)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    elem = torch.finfo(dtype).bits // 8
    impls = providers("cuda")
    g = torch.Generator().manual_seed(0)
    records = []
    for D in args.dims:
        H = HIDDEN // D
        for lq in args.lq:
            ragged = lq == "report"
            Lq = 256 if ragged else int(lq)
            B = max(1, TARGET_ROWS // Lq) if not ragged else TARGET_ROWS // 90
            q_lens = report_lengths(B, g) if ragged else None
            if ragged:
                Lq = int(q_lens.max())  # a batch is padded to its longest report
            rows = int(q_lens.sum()) if ragged else B * Lq
            for Lk in args.lk:
                q, k, v, do, ql = make_case(B, H, Lq, Lk, D, dtype, "cuda", q_lens)
                for mode in args.modes:
                    flops = 4 * H * D * rows * Lk * (1.0 if mode == "fwd" else 3.5)
                    traffic = min_bytes(B, H, Lq, Lk, D, elem, mode, rows)
                    roof = None
                    if peak is not None:
                        roof = min(peak, flops / traffic * bandwidth)  # TFLOP/s
                    for name, attend in impls.items():
                        rec = {
                            "name": "attention_kernel",
                            "provider": name,
                            "mode": mode,
                            "dtype": args.dtype,
                            "B": B,
                            "H": H,
                            "Lq": Lq,
                            "Lk": Lk,
                            "D": D,
                            "q_lens": "report" if ragged else "full",
                            "q_len_mean": rows / B,
                            "useful_flops": flops,
                            "peak_tflops": peak,
                            "roofline_tflops": roof,
                            **env,
                        }
                        try:
                            fn = step_fn(attend, mode, q, k, v, do, ql)
                            fn()  # compile / autotune outside the timed region
                            torch.cuda.synchronize()
                            torch.cuda.reset_peak_memory_stats()
                            fn()
                            torch.cuda.synchronize()
                            rec["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
                            rec |= time_cuda(fn, warmup_ms=args.warmup_ms, rep_ms=args.rep_ms)
                        except (RuntimeError, torch.OutOfMemoryError) as e:  # backend refused
                            rec["error"] = str(e).splitlines()[0][:200]
                            torch.cuda.empty_cache()
                            records.append(rec)
                            print(f"{name:>16} {mode:7} D={D} Lq={lq} Lk={Lk}: {rec['error']}")
                            continue
                        rec["tflops"] = flops / rec["median_s"] / 1e12
                        if peak is not None:
                            rec["pct_peak"] = 100 * rec["tflops"] / peak
                            rec["pct_roofline"] = 100 * rec["tflops"] / roof
                        records.append(rec)
                        print(
                            f"{name:>16} {mode:7} D={D} Lq={lq} Lk={Lk}: "
                            f"{rec['median_s'] * 1e3:.3f} ms {rec['tflops']:.1f} TFLOP/s",
                            flush=True,
                        )
                del q, k, v, do
                torch.cuda.empty_cache()
    return records


def markdown(records: list[dict], args) -> str:
    r0 = records[0]
    peak = r0["peak_tflops"]
    peak_txt = f"{peak:.0f} TFLOP/s bf16 dense" if peak else "unknown (device not in GPU_SPECS)"
    lines = [
        f"# Fused attention kernel: {r0['device']}",
        "",
        f"torch {r0['torch']}, {r0['date']}, {args.dtype}; `python {Path(__file__).name} "
        f"{' '.join(sys.argv[1:])}`. Text -> image (keys all valid; `report` = ragged query "
        f"lengths, log-normal, mean ~90, max 256). H = {HIDDEN} / D. Peak: {peak_txt}. TFLOP/s "
        "count useful work (padded rows excluded); roofline = min(peak, FLOPs / compulsory "
        "HBM bytes x bandwidth). `vs best SDPA` = best fused SDPA backend time / this time.",
        "",
        "| D | Lq | Lk | mode | provider | median ms | p20-p80 ms | TFLOP/s | % peak "
        "| % roofline | vs best SDPA | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["D"], r["q_lens"], r["Lq"], r["Lk"], r["mode"]), []).append(r)
    for (D, kind, Lq, Lk, mode), rows in groups.items():
        fused = [r["median_s"] for r in rows if r["provider"] in FUSED_SDPA and "error" not in r]
        best = min(fused) if fused else None
        lq = f"report (max {Lq})" if kind == "report" else str(Lq)
        for r in rows:
            if "error" in r:
                err = r["error"].replace("|", "/")
                lines.append(f"| {D} | {lq} | {Lk} | {mode} | {r['provider']} | n/a: {err} |||||||")
                continue
            pct = lambda key: f"{r[key]:.1f}" if key in r else "-"  # noqa: B023
            vs = f"{best / r['median_s']:.2f}x" if best else "-"
            lines.append(
                f"| {D} | {lq} | {Lk} | {mode} | {r['provider']} | {r['median_s'] * 1e3:.3f} "
                f"| {r['p20_s'] * 1e3:.3f}-{r['p80_s'] * 1e3:.3f} | {r['tflops']:.1f} "
                f"| {pct('pct_peak')} | {pct('pct_roofline')} | {vs} | {r['peak_mem_mb']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> bool:
    """TFLOP/s per configuration and provider (forward + backward); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in records if r["mode"] == "fwd+bwd" and "error" not in r]
    configs = sorted({(r["D"], r["q_lens"], r["Lq"], r["Lk"]) for r in rows})
    names = sorted({r["provider"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(8, len(configs) * 0.9), 4.5))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        mine = [r for r in rows if r["provider"] == name]
        by_cfg = {(r["D"], r["q_lens"], r["Lq"], r["Lk"]): r["tflops"] for r in mine}
        xs = [j + i * width for j, c in enumerate(configs) if c in by_cfg]
        ax.bar(xs, [by_cfg[c] for c in configs if c in by_cfg], width, label=name)
    labels = [f"D{d}\n{'rep' if k == 'report' else lq}x{lk}" for d, k, lq, lk in configs]
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(configs))], labels, fontsize=7)
    ax.set_ylabel("TFLOP/s (useful, fwd+bwd)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def smoke() -> None:
    """Tiny CPU run in Triton's interpreter: checks ours == eager and prints times (no files)."""
    os.environ["TRITON_INTERPRET"] = "1"  # before the Triton kernels first load
    B, H, Lk, D = 2, 1, 64, 32
    g = torch.Generator().manual_seed(0)
    q_lens = report_lengths(B, g, mean=20, max_len=48)
    Lq = int(q_lens.max())
    q, k, v, do, ql = make_case(B, H, Lq, Lk, D, torch.float32, "cpu", q_lens)
    impls = providers("cpu")
    want = impls["eager"](q, k, v, q_lens=ql)
    torch.testing.assert_close(impls["ours"](q, k, v, q_lens=ql), want, atol=1e-5, rtol=1e-4)
    print(f"smoke (interpreter, fp32): B={B} H={H} Lq={Lq} q_lens={q_lens.tolist()} Lk={Lk} D={D}")
    for mode in ("fwd", "fwd+bwd"):
        for name, attend in impls.items():
            t = time_fn(step_fn(attend, mode, q, k, v, do, ql), warmup=1, iters=5)
            print(f"{name:>10} {mode:7} median {t['median_s'] * 1e3:8.2f} ms")
    print("ok: ours matches eager; CPU times are the interpreter's, not a performance result")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny CPU interpreter run, no files")
    p.add_argument("--dims", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--lq", nargs="+", default=["64", "128", "256", "report"])
    p.add_argument("--lk", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--warmup-ms", type=int, default=25)
    p.add_argument("--rep-ms", type=int, default=100)
    args = p.parse_args()
    if args.smoke:
        smoke()
        return
    if not torch.cuda.is_available():
        print("bench_attention: no CUDA GPU here; nothing to measure. Use --smoke for a tiny CPU")
        print("interpreter run (correctness smoke only, no results written).")
        return
    records = sweep(args)
    slug = re.sub(r"[^a-z0-9]+", "-", records[0]["device"].lower()).strip("-")
    name = f"attention_kernel_{slug}"
    md = markdown(records, args)
    png = RESULTS / f"{name}.png"
    RESULTS.mkdir(exist_ok=True)
    if plot(records, png):
        md += f"\n![TFLOP/s, forward + backward]({png.name})\n"
    jsonl, md_path = write_results(name, records, md)
    print(md)
    print(f"-> {jsonl}, {md_path}")


if __name__ == "__main__":
    main()
