"""`medtrain <command>`: data synth | tokenizer train | pretrain | eval.

Run options come from presets and `--set section.key=value` overrides, not from flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from medtrain.config import ConfigError, available_presets
from medtrain.data.errors import DataError


def _synth(args: argparse.Namespace) -> None:
    from medtrain.data.synth import SynthConfig, generate

    cfg = SynthConfig(
        layout=args.layout,
        n=args.n,
        seed=args.seed,
        image_size=args.image_size,
        phi_fraction=args.phi_fraction,
    )
    summary = generate(cfg, Path(args.out))
    print(json.dumps(summary, indent=2, default=str))


def _reports(source: str, root: str, split: str) -> list[str]:
    from medtrain.data.reports import training_text
    from medtrain.data.sources import get_source

    if not Path(root).is_dir():
        raise DataError(f"corpus root {root} does not exist")
    texts = []
    for rec in get_source(source)(Path(root), splits=[split]):
        try:
            texts.append(training_text(rec.report))
        except DataError:
            continue
    return texts


def _tokenizer_train(args: argparse.Namespace) -> None:
    from medtrain.data.tokenizer import train_tokenizer

    texts: list[str] = []
    for root in args.root:
        texts += _reports(args.source, root, args.split)
    for f in args.corpus:
        texts += [line for line in Path(f).read_text().splitlines() if line.strip()]
    if not texts:
        raise DataError("no text to train the tokenizer on (give --root and/or --corpus)")
    tok = train_tokenizer(texts, vocab_size=args.vocab_size, out_dir=Path(args.out))
    print(f"trained WordPiece vocab of {len(tok)} on {len(texts)} documents -> {args.out}")


def _pretrain(args: argparse.Namespace) -> None:
    from medtrain.config import load_config
    from medtrain.train.loop import pretrain

    cfg = load_config(args.preset, args.set)
    summary = pretrain(cfg, resume=args.resume)
    import torch.distributed as dist

    if dist.get_rank() == 0:
        e = summary["eval"]
        print(
            f"done: {summary['step']} steps in {summary['train_wall_s']:.0f} s; "
            f"held-out zero-shot AUC (mean) {e.get('auc/mean', float('nan')):.3f}, "
            f"R@1 i2t {e['i2t_R@1']:.3f} t2i {e['t2i_R@1']:.3f} (n={int(e['n'])})"
        )
        print(f"logs: {summary['tensorboard']} (tensorboard), {summary['out_dir']}/metrics.jsonl")
        print(f"checkpoints: {summary['checkpoints']}; eval: {summary['out_dir']}/eval/")
    dist.destroy_process_group()


def _eval(args: argparse.Namespace) -> None:
    import torch

    from medtrain.data.dataset import PairDataset
    from medtrain.eval.runner import evaluate
    from medtrain.train.checkpoint import load_run

    model, tokenizer, cfg = load_run(args.run, args.tag)
    ds = PairDataset(cfg.data, args.split, cfg.model.vision.img_size)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medtrain", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data sets").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("synth", help="generate synthetic chest X-rays in a real layout")
    s.add_argument("--layout", choices=["mimic-cxr-jpg", "openi"], default="mimic-cxr-jpg")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=512)
    s.add_argument("--phi-fraction", type=float, default=0.2)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_synth)

    tok = sub.add_parser("tokenizer", help="tokenizer").add_subparsers(
        dest="tok_cmd", required=True
    )
    t = tok.add_parser("train", help="train a WordPiece vocabulary on report text")
    t.add_argument("--source", default="mimic-cxr-jpg", help="reader for --root directories")
    t.add_argument("--root", nargs="*", default=[], help="data set roots (train split is read)")
    t.add_argument("--split", default="train")
    t.add_argument("--corpus", nargs="*", default=[], help="text files, one document per line")
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument("--out", required=True)
    t.set_defaults(fn=_tokenizer_train)

    pt = sub.add_parser("pretrain", help="contrastive + MLM pretraining (DeepSpeed)")
    pt.add_argument(
        "--preset", default="tiny-cpu", help=f"one of {available_presets()} or a YAML path"
    )
    pt.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. train.lr=1e-4 (repeatable)",
    )
    pt.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    pt.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # deepspeed
    pt.set_defaults(fn=_pretrain)

    ev = sub.add_parser("eval", help="zero-shot retrieval + classification of a pretrained run")
    ev.add_argument("--run", required=True, help="run directory (train.out_dir)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    ev.add_argument("--max-samples", type=int, default=0)
    ev.set_defaults(fn=_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"medtrain: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
