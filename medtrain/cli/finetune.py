"""`medtrain finetune cls|vqa|report --init RUN_DIR`: a downstream task on a pretrained MedVLP.

Same config style as `medtrain pretrain` (a preset + `--set section.key=value`), same DeepSpeed
engine and launchers. The task positional sets finetune.task, --init sets finetune.init; the
default preset is finetune-<task>-cpu.
"""

from __future__ import annotations

import argparse

from medtrain.config import available_presets, config_yaml, load_config
from medtrain.finetune.config import TASKS


def _finetune(args: argparse.Namespace) -> None:
    preset = args.preset or f"finetune-{args.task}-cpu"
    sets = [f"finetune.task={args.task}", *args.set]
    cfg = load_config(preset, sets, kind="finetune")
    if args.init is not None:
        cfg.finetune.init = args.init
    if args.print_config:  # before any torch import
        print(config_yaml(cfg), end="")
        return

    import torch.distributed as dist

    from medtrain.finetune.loop import finetune

    summary = finetune(cfg, resume=args.resume)
    if dist.get_rank() == 0:
        result = summary.get("eval", {})
        shown = ", ".join(
            f"{k} {v:.3f} (baseline {result['baseline'].get(k, float('nan')):.3f})"
            for k, v in result.get("metrics", {}).items()
            if k in ("auc/macro", "accuracy/overall", "vqa_score", "bleu4", "cider", "ce/f1")
        )
        print(
            f"done: {args.task}, {summary['step']} steps in {summary['train_wall_s']:.0f} s; "
            f"{cfg.finetune.eval_split} (n={result.get('n', 0)}): {shown}"
        )
        print(f"logs: {summary['tensorboard']} (tensorboard); eval: {summary['eval_file']}")
    dist.destroy_process_group()


def add_parser(sub: argparse._SubParsersAction) -> None:
    ft = sub.add_parser("finetune", help="fine-tune a pretrained run on a downstream task")
    ft.add_argument("task", choices=list(TASKS), help="downstream task")
    ft.add_argument(
        "--init",
        default=None,
        metavar="RUN_DIR",
        help="pretraining run directory (config.yaml, tokenizer/, checkpoints/)",
    )
    ft.add_argument(
        "--preset",
        default="",
        help=f"one of {available_presets('finetune')} or a YAML path (default: "
        "finetune-<task>-cpu)",
    )
    ft.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. finetune.label_fraction=0.01 (repeatable)",
    )
    ft.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    ft.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (preset + overrides) as YAML and exit",
    )
    ft.set_defaults(fn=_finetune)
