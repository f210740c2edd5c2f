"""`medtrain ckpt`: inspect a run's checkpoints and convert one for another world size.

    medtrain ckpt list --run DIR                 every tag: step, ranks, complete or why not
    medtrain ckpt universal --run DIR [--tag T]  ZeRO-1/2/3 tag -> T_universal (elastic resume)

`--resume` converts by itself when the world size changed; converting beforehand keeps a long
conversion out of the ranks' collective timeout. Both commands open files through the gate.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _store(run: str):
    from medtrain.train.checkpoint import CheckpointStore

    root = Path(run) / "checkpoints"
    if not root.is_dir():
        raise FileNotFoundError(f"no checkpoints under {run} (missing {root})")
    return CheckpointStore(root, rank=0, world=1)


def _list(args: argparse.Namespace) -> None:
    store = _store(args.run)
    latest = store.latest()
    infos = store.describe()
    if not infos:
        raise FileNotFoundError(f"no step<k> checkpoint under {store.root}")
    print(f"{'tag':<14}{'step':>8}{'ranks':>7}  {'zero':<12}{'universal':<10}status")
    for t in infos:
        mark = "*" if t.tag == latest else " "
        status = "complete" if t.complete else t.why
        zero, conv = (
            ("partitioned" if t.partitioned else "stage 0"),
            ("yes" if t.universal else "-"),
        )
        print(
            f"{mark}{t.tag:<13}{t.step:>8}{t.world if t.world is not None else '?':>7}  "
            f"{zero:<12}{conv:<10}{status}"
        )
    print(f"(* = named by latest: {latest or 'none'})")


def _universal(args: argparse.Namespace) -> None:
    from medtrain.train.checkpoint.universal import convert

    store = _store(args.run)
    tag, notes = store.choose(args.tag)  # gate + completeness; falls back like --resume
    for note in notes:
        print(note)
    out = convert(store.root, tag)
    print(f"converted {store.root / tag} -> {out} (resume on any world size with --resume)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    ck = sub.add_parser("ckpt", help="list checkpoints; universal conversion for elastic resume")
    cmds = ck.add_subparsers(dest="ckpt_command", required=True)
    ls = cmds.add_parser("list", help="tags of a run: step, ranks, complete or why not")
    ls.add_argument("--run", required=True, help="run directory (train.out_dir)")
    ls.set_defaults(fn=_list)
    un = cmds.add_parser(
        "universal", help="convert a ZeRO-1/2/3 tag to a universal checkpoint (any world size)"
    )
    un.add_argument("--run", required=True, help="run directory (train.out_dir)")
    un.add_argument("--tag", default=None, help="tag to convert (default: latest complete)")
    un.set_defaults(fn=_universal)
