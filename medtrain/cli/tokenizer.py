"""`medtrain tokenizer ...`: vocabulary training."""

from __future__ import annotations

import argparse
from pathlib import Path

from medtrain.data.errors import DataError


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


def _train(args: argparse.Namespace) -> None:
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("tokenizer", help="tokenizer")
    cmds = tok.add_subparsers(dest="tok_cmd", required=True)
    t = cmds.add_parser("train", help="train a WordPiece vocabulary on report text")
    t.add_argument("--source", default="mimic-cxr-jpg", help="reader for --root directories")
    t.add_argument("--root", nargs="*", default=[], help="data set roots (train split is read)")
    t.add_argument("--split", default="train")
    t.add_argument("--corpus", nargs="*", default=[], help="text files, one document per line")
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument("--out", required=True)
    t.set_defaults(fn=_train)
