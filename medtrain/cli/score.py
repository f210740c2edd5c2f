"""`medtrain score`: score any system's predictions with our scorers.

    medtrain score --task report|cls|vqa --pred PRED.jsonl --ref REF.jsonl [--json] [--bootstrap N]

Prints a table of metrics (and notes: how CE was computed, left-out findings, skipped labels,
ignored keys); with --json the last stdout line is one JSON object {metric: value}.
Line formats: see medtrain/eval/metrics/score.py. Heavy imports (sklearn, pycocoevalcap)
happen in the command.
"""

from __future__ import annotations

import argparse
import json

TASKS = ("report", "cls", "vqa")


def _score(args: argparse.Namespace) -> None:
    from medtrain.eval.metrics.score import read_jsonl, score_report

    preds, refs = read_jsonl(args.pred), read_jsonl(args.ref)
    result = score_report(args.task, preds, refs, bootstrap=args.bootstrap, seed=args.seed)
    width = max((len(k) for k in result.metrics), default=10)
    print(f"{'metric':<{width}}  value")
    for key, value in result.metrics.items():
        print(f"{key:<{width}}  {value:.4f}")
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        print(json.dumps(result.metrics, sort_keys=False))


def add_parser(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser("score", help="score predictions (JSONL) against references (JSONL)")
    sc.add_argument("--task", required=True, choices=TASKS, help="what the lines hold")
    sc.add_argument("--pred", required=True, help="predictions JSONL")
    sc.add_argument("--ref", required=True, help="references JSONL")
    sc.add_argument("--json", action="store_true", help="last stdout line: metrics as JSON")
    sc.add_argument(
        "--bootstrap", type=int, default=1000, help="cls: bootstrap resamples for the 95%% CI"
    )
    sc.add_argument("--seed", type=int, default=0, help="cls: bootstrap seed")
    sc.set_defaults(fn=_score)
