"""`medtrain data ...`: data-set commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medtrain.config import ConfigError


def _synth(args: argparse.Namespace) -> None:
    from medtrain.data.synth import SynthConfig, generate

    try:
        cfg = SynthConfig(
            layout=args.layout,
            n=args.n,
            seed=args.seed,
            image_size=args.image_size,
            phi_fraction=args.phi_fraction,
            lateral_fraction=args.lateral_fraction,
        )
    except ValueError as e:
        raise ConfigError(f"data synth: {e}") from None
    summary = generate(cfg, Path(args.out))
    print(json.dumps(summary, indent=2, default=str))


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="data sets").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("synth", help="generate synthetic chest X-rays in a real layout")
    s.add_argument("--layout", choices=["mimic-cxr-jpg", "openi"], default="mimic-cxr-jpg")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=512)
    s.add_argument("--phi-fraction", type=float, default=0.2)
    s.add_argument("--lateral-fraction", type=float, default=0.0, help="MIMIC: extra LATERAL views")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_synth)
