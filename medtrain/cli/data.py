"""`medtrain data ...`: data-set commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medtrain.config import ConfigError

LAYOUTS = ("mimic-cxr-jpg", "openi", "r2gen", "dicom", "manifest")  # = synth.LAYOUTS (lazy import)


def _synth(args: argparse.Namespace) -> None:
    from medtrain.synth.generate import SynthConfig, generate

    try:
        cfg = SynthConfig(
            layout=args.layout,
            n=args.n,
            seed=args.seed,
            image_size=args.image_size,
            phi_fraction=args.phi_fraction,
            lateral_fraction=args.lateral_fraction,
            manifest_format=args.manifest_format,
        )
    except ValueError as e:
        raise ConfigError(f"data synth: {e}") from None
    summary = generate(cfg, Path(args.out))
    print(json.dumps(summary, indent=2, default=str))


def _deid_audit(args: argparse.Namespace) -> None:
    from medtrain.data.deid import audit, format_audit
    from medtrain.data.sources import get_source

    def reports():  # one report per study (images of a study share it)
        seen: set[str] = set()
        for rec in get_source(args.source)(Path(args.root)):
            key = rec.study_id or rec.id
            if key not in seen:
                seen.add(key)
                yield key, rec.report
                if args.limit and len(seen) >= args.limit:
                    return

    rep = audit(reports(), examples=args.examples, context=args.context)
    for line in format_audit(rep):
        print(line)


def _add_deid_audit(data: argparse._SubParsersAction) -> None:
    a = data.add_parser("deid-audit", help="show what de-identification would scrub")
    a.add_argument("--source", required=True, help="reader name, e.g. mimic-cxr-jpg, dicom")
    a.add_argument("--root", required=True, help="data set root in the source's own layout")
    a.add_argument("--limit", type=int, default=0, help="reports to read (0: all)")
    a.add_argument("--examples", type=int, default=3, help="examples shown per PHI kind")
    a.add_argument("--context", type=int, default=30, help="characters shown around each")
    a.set_defaults(fn=_deid_audit)


def _prepare(args: argparse.Namespace) -> None:
    from medtrain.data.shards.write import ShardConfig, prepare_shards

    try:
        cfg = ShardConfig(
            shard_size=args.shard_size,
            image_size=args.image_size,
            fit=args.fit,
            workers=args.workers,
            seed=args.seed,
        )
    except ValueError as e:
        raise ConfigError(f"data prepare: {e}") from None
    summary = prepare_shards(
        source=args.source,
        root=args.root,
        out=args.out,
        split=args.split,
        cfg=cfg,
        dry_run=args.dry_run,
    )
    print(json.dumps(summary, indent=2))


def _add_prepare(data: argparse._SubParsersAction) -> None:
    p = data.add_parser("prepare", help="write webdataset tar shards (resumable, parallel)")
    p.add_argument("--source", required=True, help="reader name, e.g. mimic-cxr-jpg, openi")
    p.add_argument("--root", required=True, help="data set root in the source's own layout")
    p.add_argument("--out", required=True, help="shard directory")
    p.add_argument("--split", default="train", help="train | validate | test | all")
    p.add_argument("--workers", type=int, default=1, help="writer processes")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--fit", choices=["pad", "crop"], default="pad")
    p.add_argument("--seed", type=int, default=0, help="seed of the within-window shuffle")
    p.add_argument("--dry-run", action="store_true", help="enumerate and plan only")
    p.set_defaults(fn=_prepare)


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="data sets").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("synth", help="generate synthetic chest X-rays in a real layout")
    s.add_argument("--layout", choices=list(LAYOUTS), default="mimic-cxr-jpg")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=512)
    s.add_argument("--phi-fraction", type=float, default=0.2)
    s.add_argument("--lateral-fraction", type=float, default=0.0, help="extra LATERAL views")
    s.add_argument("--manifest-format", choices=["jsonl", "csv"], default="jsonl")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_synth)
    _add_deid_audit(data)
    _add_prepare(data)
