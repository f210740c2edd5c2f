"""`medtrain data ...`: data-set commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medtrain.cli.flags import add_dataclass_flags, dataclass_from_args
from medtrain.config import ConfigError
from medtrain.data.config import SPLITS, TEXT_FALLBACK_ENCODINGS, DeidConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.synth.config import SynthConfig


def _synth(args: argparse.Namespace) -> None:
    cfg = dataclass_from_args(SynthConfig, args, where="data synth")
    from medtrain.synth.generate import generate

    summary = generate(cfg, Path(args.out))
    print(json.dumps(summary, indent=2, default=str))


def _deid_audit(args: argparse.Namespace) -> None:
    from medtrain.data.deid import audit, format_audit
    from medtrain.data.sources import open_source

    skipped: list[tuple[str, str]] = []
    fallback = {"text_fallback_encoding": args.text_fallback_encoding}

    def reports():  # one report per study (images of a study share it)
        seen: set[str] = set()
        for rec in open_source(args.source, args.root, skipped=skipped, **fallback):
            key = rec.study_id or rec.id
            if rec.report is not None and key not in seen:
                seen.add(key)
                yield key, rec.report
                if args.limit and len(seen) >= args.limit:
                    return

    rep = audit(reports(), examples=args.examples, context=args.context)
    for line in format_audit(rep):
        print(line)
    _print_skipped("deid-audit", skipped)


def _print_skipped(where: str, skipped: list[tuple[str, str]]) -> None:
    """Reader skips on stderr: the count, then up to 5 (id, reason)."""
    if skipped:
        print(f"{where}: {len(skipped)} item(s) skipped by the reader:", file=sys.stderr)
        for item, reason in skipped[:5]:
            print(f"  {item}: {reason}", file=sys.stderr)


def _add_deid_audit(data: argparse._SubParsersAction) -> None:
    a = data.add_parser("deid-audit", help="show what de-identification would scrub")
    a.add_argument("--source", required=True, help="reader name, e.g. mimic-cxr-jpg, dicom")
    a.add_argument("--root", required=True, help="data set root in the source's own layout")
    a.add_argument("--limit", type=int, default=0, help="reports to read (0: all)")
    a.add_argument("--examples", type=int, default=3, help="examples shown per PHI kind")
    a.add_argument("--context", type=int, default=30, help="characters shown around each")
    _add_fallback(a)
    a.set_defaults(fn=_deid_audit)


def _add_fallback(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--text-fallback-encoding",
        default="",
        choices=list(TEXT_FALLBACK_ENCODINGS),
        help="decode reports that are not valid UTF-8 with this (before de-identification); "
        "default: quarantine them with the reason",
    )


def _prepare(args: argparse.Namespace) -> None:
    cfg = dataclass_from_args(ShardConfig, args, where="data prepare")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"data prepare: --out {args.out} is a file, not a shard directory")
    from medtrain.data.shards.write import prepare_shards

    # Reader options (data.reports_root, data.images_root); empty: the reader searches.
    options = {
        "reports_root": args.reports_root,
        "images_root": args.images_root,
        "text_fallback_encoding": args.text_fallback_encoding,
    }
    if args.no_deid:
        print("data prepare: de-identification is OFF (--no-deid)", file=sys.stderr)
    summary = prepare_shards(
        source=args.source,
        root=args.root,
        out=args.out,
        split=args.split,
        cfg=cfg,
        dry_run=args.dry_run,
        deid=DeidConfig(enabled=not args.no_deid),
        **{k: v for k, v in options.items() if v},
    )
    print(json.dumps(summary, indent=2))
    if summary.get("reader_skipped") or summary.get("quarantined"):
        print(
            f"data prepare: {summary.get('reader_skipped', 0)} record(s) skipped by the reader, "
            f"{summary.get('quarantined', 0)} quarantined in all: see "
            f"{Path(args.out) / 'quarantine.jsonl'}",
            file=sys.stderr,
        )


def _add_prepare(data: argparse._SubParsersAction) -> None:
    p = data.add_parser("prepare", help="write webdataset tar shards (resumable, parallel)")
    p.add_argument("--source", required=True, help="reader name, e.g. mimic-cxr-jpg, openi")
    p.add_argument("--root", required=True, help="data set root in the source's own layout")
    p.add_argument("--out", required=True, help="shard directory")
    p.add_argument(
        "--split",
        default="train",
        choices=[*SPLITS, "all"],
        help="split to write; all: every split, each sample's split kept (default: train)",
    )
    p.add_argument(
        "--reports-root",
        default="",
        help="mimic-cxr-jpg: reports tree kept apart from the JPG tree (default: searched)",
    )
    p.add_argument(
        "--images-root",
        default="",
        help="openi, rsna-pneumonia, vqa-rad, slake: image folder kept apart (default: searched)",
    )
    p.add_argument(
        "--no-deid",
        action="store_true",
        help="skip de-identification: only for sources de-identified at the source (the "
        "manifest's text path records it)",
    )
    _add_fallback(p)
    add_dataclass_flags(p, ShardConfig)
    p.add_argument("--dry-run", action="store_true", help="enumerate and plan only")
    p.set_defaults(fn=_prepare)


def _verify(args: argparse.Namespace) -> None:
    from medtrain.data.shards.manifest import verify_shards

    bad = verify_shards(args.shards)
    for name in bad:
        print(f"bad: {Path(args.shards) / name} (size or sha256 differs from the manifest)")
    if bad:
        raise DataError(f"{len(bad)} shard(s) under {args.shards} differ from manifest.json")
    print(f"ok: every shard under {args.shards} matches manifest.json")


def _add_verify(data: argparse._SubParsersAction) -> None:
    v = data.add_parser("verify", help="check shard sizes and sha256 against manifest.json")
    v.add_argument("--shards", required=True, help="shard directory (`data prepare --out`)")
    v.set_defaults(fn=_verify)


def _preview(args: argparse.Namespace) -> None:
    from medtrain.data.preview import format_row, preview_config, preview_rows

    if args.n < 1:
        raise ConfigError(f"data preview: --n must be >= 1, got {args.n}")
    cfg = preview_config(
        args.preset,
        args.set,
        source=args.source,
        root=args.root,
        shards=args.shards,
        reports_root=args.reports_root,
        images_root=args.images_root,
    )
    split = args.split or cfg.data.train_split
    rows = preview_rows(cfg.data, image_size=cfg.model.vision.img_size, split=split, n=args.n)
    for row in rows:
        print(json.dumps(row) if args.json else format_row(row), flush=True)


def _add_preview(data: argparse._SubParsersAction) -> None:
    v = data.add_parser("preview", help="print samples exactly as training builds them")
    v.add_argument("--source", required=True, help="reader name, e.g. mimic-cxr-jpg, openi")
    v.add_argument("--root", required=True, help="data set root in the source's own layout")
    v.add_argument("--shards", default="", help="read these shards (`data prepare --out`)")
    v.add_argument("--split", choices=list(SPLITS), help="default: the config's data.train_split")
    v.add_argument("--n", type=int, default=5, help="samples to print (the split's first)")
    v.add_argument("--json", action="store_true", help="one JSON object per line")
    v.add_argument("--reports-root", default="", help="mimic-cxr-jpg: reports tree kept apart")
    v.add_argument(
        "--images-root",
        default="",
        help="openi, rsna-pneumonia, vqa-rad, slake: image folder kept apart (default: searched)",
    )
    v.add_argument("--preset", default="tiny-cpu", help="preset whose data/model config applies")
    v.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    v.set_defaults(fn=_preview)


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="data sets").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("synth", help="generate synthetic chest X-rays in a real layout")
    add_dataclass_flags(s, SynthConfig)
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(fn=_synth)
    _add_deid_audit(data)
    _add_prepare(data)
    _add_verify(data)
    _add_preview(data)
