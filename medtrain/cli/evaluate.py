"""`medtrain eval`: zero-shot evaluation of a pretraining run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _eval(args: argparse.Namespace) -> None:
    import torch

    from medtrain.data.pipeline import eval_dataset
    from medtrain.eval.runner import evaluate
    from medtrain.train.checkpoint import load_run

    model, tokenizer, cfg = load_run(args.run, args.tag)
    cfg.data.eval_split = args.split
    ds = eval_dataset(cfg.data, cfg.model.vision.img_size)
    metrics = evaluate(
        model,
        ds,
        tokenizer,
        cfg.eval,
        max_length=cfg.model.text.max_length,
        device=torch.device("cpu"),
        max_samples=args.max_samples,
    )
    out = Path(args.run) / "eval" / f"{args.split}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    print(f"written to {out}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="zero-shot retrieval + classification of a pretrained run")
    ev.add_argument("--run", required=True, help="run directory (train.out_dir)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    ev.add_argument("--max-samples", type=int, default=0)
    ev.set_defaults(fn=_eval)
