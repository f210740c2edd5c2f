"""`medtrain <command>`: one module per command group, each adding its own subparsers.

Run options (pretrain) come from presets and `--set section.key=value` overrides, not from flags;
the flags of `data synth` / `data prepare` are generated from their config dataclasses
(cli/flags.py). Building the parser and every --help import no torch, timm, transformers,
triton, cv2 or numpy: command modules import heavy code inside the command function.
"""

from __future__ import annotations

import argparse
import logging
import sys

from medtrain.cli import ckpt, data, evaluate, finetune, score, tokenizer, train
from medtrain.config import ConfigError
from medtrain.data.errors import DataError
from medtrain.train.errors import CheckpointError, RankHung, TrainingDiverged

GROUPS = (data, tokenizer, train, finetune, evaluate, score, ckpt)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medtrain", description=__doc__)
    # The deepspeed launcher inserts --local_rank=N before the command (LOCAL_RANK is also set).
    p.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"medtrain: error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, TrainingDiverged, RankHung) as e:
        print(f"medtrain: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
