"""`medtrain pretrain`: contrastive + MLM pretraining on DeepSpeed (1 process or launched)."""

from __future__ import annotations

import argparse

from medtrain.config import available_presets, config_yaml, load_config


def _pretrain(args: argparse.Namespace) -> None:
    cfg = load_config(args.preset, args.set, kind="pretrain")
    if args.print_config:  # before any torch import: a quick look at what would run
        print(config_yaml(cfg), end="")
        return

    import torch.distributed as dist

    from medtrain.train.loop import pretrain

    summary = pretrain(cfg, resume=args.resume)
    if summary["status"] == "stopped":  # SIGUSR1: checkpoint saved, no final evaluation
        dist.destroy_process_group()
        return
    if dist.get_rank() == 0:
        e = summary["eval"]
        print(
            f"done: {summary['step']} steps in {summary['train_wall_s']:.0f} s; "
            f"held-out zero-shot AUC (macro) {e.get('auc/macro', float('nan')):.3f}, "
            f"R@1 i2t {e['i2t_R@1']:.3f} t2i {e['t2i_R@1']:.3f} (n={int(e['n'])})"
        )
        print(f"logs: {summary['tensorboard']} (tensorboard), {summary['out_dir']}/metrics.jsonl")
        print(f"checkpoints: {summary['checkpoints']}; eval: {summary['out_dir']}/eval/")
        if summary["skipped_steps"]:
            n, out = summary["skipped_steps"], summary["out_dir"]
            print(f"skipped optimizer steps (non-finite): {n}; loss spikes: {out}/spikes.jsonl")
    dist.destroy_process_group()


def add_parser(sub: argparse._SubParsersAction) -> None:
    pt = sub.add_parser("pretrain", help="contrastive + MLM pretraining (DeepSpeed)")
    pt.add_argument(
        "--preset",
        default="tiny-cpu",
        help=f"one of {available_presets('pretrain')} or a YAML path",
    )
    pt.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. train.lr=1e-4 (repeatable)",
    )
    pt.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint (also after SIGUSR1: a pre-timeout stop saves "
        "one and exits 0)",
    )
    pt.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (preset + overrides) as YAML and exit",
    )
    pt.set_defaults(fn=_pretrain)
