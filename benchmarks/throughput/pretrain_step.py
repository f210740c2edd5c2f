"""Pretraining-step throughput of a preset's model (forward + backward + AdamW) on this machine.

Compares precisions in one process against the fp32 baseline: fp32, bf16 autocast, and bf16
parameters (what DeepSpeed's bf16 mode runs). Random inputs; no data loading.

    python benchmarks/throughput/pretrain_step.py --preset tiny-cpu --iters 10
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, time_fn, write_results  # noqa: E402

from medtrain.config import load_config  # noqa: E402
from medtrain.losses import compute_losses  # noqa: E402
from medtrain.models.medvlp import MedVLP  # noqa: E402


def random_batch(b: int, size: int, length: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(6, vocab, (b, length), generator=g)
    labels = torch.where(torch.rand(b, length, generator=g) < 0.15, ids, -100)
    return {
        "pixel_values": torch.randn(b, 1, size, size, generator=g),
        "input_ids": ids,
        "attention_mask": torch.ones(b, length, dtype=torch.long),
        "mlm_input_ids": torch.where(labels != -100, 4, ids),
        "mlm_labels": labels,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="tiny-cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    cfg = load_config(args.preset)
    size = cfg.model.vision.img_size
    env = environment()
    records = []
    for mode in ("fp32", "bf16-autocast", "bf16-params"):
        torch.manual_seed(0)
        model = MedVLP(cfg.model, vocab_size=args.vocab)
        batch = random_batch(args.batch, size, args.text_len, args.vocab)
        if mode == "bf16-params":
            model.to(torch.bfloat16)
            batch["pixel_values"] = batch["pixel_values"].bfloat16()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if mode == "bf16-autocast"
            else contextlib.nullcontext()
        )

        def step(model=model, batch=batch, opt=opt, ctx=ctx) -> None:
            with ctx:
                loss = compute_losses(model(batch), cfg.loss)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        t = time_fn(step, warmup=args.warmup, iters=args.iters)
        records.append(
            {
                "name": "pretrain_step",
                "preset": args.preset,
                "mode": mode,
                "batch": args.batch,
                "text_len": args.text_len,
                "img_size": size,
                **env,
                **t,
                "samples_per_s": args.batch / t["median_s"],
            }
        )
        print(records[-1], flush=True)
    base = records[0]["samples_per_s"]
    lines = [
        f"# Pretraining step throughput: {args.preset}",
        "",
        f"{env['device']}, torch {env['torch']}, {env['date']}. Batch {args.batch}, "
        f"{size} px, {args.text_len} tokens; forward + backward + AdamW, random inputs; median "
        f"of {args.iters} after {args.warmup} warm-up steps.",
        "",
        "| mode | median s/step | p20-p80 | samples/s | vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['mode']} | {r['median_s']:.3f} | {r['p20_s']:.3f}-{r['p80_s']:.3f} "
            f"| {r['samples_per_s']:.1f} | {r['samples_per_s'] / base:.2f}x |"
        )
    jsonl, md = write_results(f"pretrain_step_{args.preset}", records, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {jsonl}, {md}")


if __name__ == "__main__":
    main()
