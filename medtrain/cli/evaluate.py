"""`medtrain eval`: zero-shot evaluation of a pretraining run directory (--task zeroshot, the
default), or evaluation of a fine-tuning run (--task cls|vqa|report); both write
eval/<task>-<split>.json and .md (--max-samples N: eval/<task>-<split>-first<N>.*, so a partial
evaluation never replaces the full one)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medtrain.config import ConfigError
from medtrain.data.config import SPLITS


def _device(args: argparse.Namespace):
    import torch

    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as e:
        raise ConfigError(f"eval: --device {args.device!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"eval: --device {args.device} but no CUDA device is available")
    return device


def _eval_finetuned(args: argparse.Namespace) -> None:
    from medtrain.finetune.evaluate import eval_prefix, evaluate_run

    device = _device(args)
    notes: list[str] = []
    result = evaluate_run(
        args.run,
        args.split,
        device,
        task_name=args.task,
        tag=args.tag,
        max_samples=args.max_samples,
        notes=notes,
    )
    for note in notes:
        print(note, file=sys.stderr)
    print(json.dumps({"metrics": result["metrics"], "baseline": result["baseline"]}, indent=2))
    _say_written(eval_prefix(args.run, args.task, args.split, args.max_samples), args.max_samples)


def _say_written(prefix: Path, first: int) -> None:
    print(f"written to {prefix}.json and {prefix}.md")
    if first:
        print(
            f"partial evaluation (--max-samples {first}): only the first {first} samples, "
            f"written beside, not over, {prefix.name.removesuffix(f'-first{first}')}.json"
        )


def _eval(args: argparse.Namespace) -> None:
    if args.task != "zeroshot":
        _eval_finetuned(args)
        return
    from medtrain.data.pipeline import build_pipeline
    from medtrain.eval.runner import evaluate
    from medtrain.finetune.evaluate import eval_prefix, zeroshot_markdown
    from medtrain.train.checkpoint import load_run

    device = _device(args)
    notes: list[str] = []
    model, tokenizer, cfg = load_run(args.run, args.tag, notes)  # through the checkpoint gate
    for note in notes:
        print(note, file=sys.stderr)
    model.to(device)
    cfg.data.eval_split = args.split
    pipeline = build_pipeline(cfg.data, image_size=cfg.model.vision.img_size)
    metrics = evaluate(
        model,
        pipeline.eval(),
        tokenizer,
        cfg.eval,
        max_length=cfg.model.text.max_length,
        device=device,
        on_device=pipeline.on_device,
        max_samples=args.max_samples,
    )
    prefix = eval_prefix(args.run, "zeroshot", args.split, args.max_samples)
    prefix.parent.mkdir(exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(metrics, indent=2))
    name = f"zeroshot on {args.split}" + (
        f" (first {args.max_samples} samples only)" if args.max_samples else ""
    )
    Path(f"{prefix}.md").write_text(zeroshot_markdown(name, metrics))
    print(json.dumps(metrics, indent=2))
    _say_written(prefix, args.max_samples)


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="zero-shot retrieval + classification of a pretrained run, or a fine-tuned run's task",
    )
    ev.add_argument("--run", required=True, help="run directory (train.out_dir)")
    ev.add_argument(
        "--task",
        default="zeroshot",
        choices=["cls", "vqa", "report", "zeroshot"],
        help="zeroshot: a pretraining run; cls | vqa | report: a fine-tuning run of that task",
    )
    ev.add_argument("--split", default="test", choices=list(SPLITS))
    ev.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    ev.add_argument(
        "--max-samples",
        type=int,
        default=0,
        help="evaluate only the first N samples, written to eval/<task>-<split>-first<N>.*",
    )
    ev.add_argument(
        "--device", default="", help="torch device, e.g. cuda:1 or cpu (default: cuda if available)"
    )
    ev.set_defaults(fn=_eval)
