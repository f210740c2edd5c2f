"""Launched by test_finetune_launch.py under `deepspeed --num_gpus 2` (CPU ranks): for each task
(cls, vqa, report) fine-tune a few steps with ZeRO-2 bf16 and checkpoints, then call finetune
again in the same process with resume=True and more steps. Each rank writes RESULT-rank<r>.json:
{task: {"first": summary, "resumed": summary, "rank", "world"}} ("eval" is rank 0's only).

    deepspeed --num_gpus 2 finetune_tasks.py --init RUN --mimic DIR --vqa DIR --out DIR \
        --steps 2 --more 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DATA = {"cls": "mimic", "vqa": "vqa", "report": "mimic"}


def task_sets(task: str, args: argparse.Namespace, steps: int) -> list[str]:
    """--set values of one tiny run of `task` under args.out/<task>."""
    values = {
        "finetune.init": args.init,
        "data.root": getattr(args, DATA[task]),
        "data.num_workers": 0,
        "train.out_dir": Path(args.out) / task,
        "train.steps": steps,
        "train.micro_batch_size": 4,
        "train.zero_stage": 2,
        "train.precision": "bf16",
        "train.warmup_fraction": 0.0,
        "train.log_every": 1,
        "train.ckpt_every": 1,
        "train.keep_last": 2,
        "finetune.bootstrap": 20,
    }
    if task == "report":
        values |= {
            "finetune.decoder_layers": 1,
            "finetune.max_target_length": 48,
            "finetune.max_new_tokens": 8,
            "finetune.num_beams": 2,
        }
    return [f"{k}={v}" for k, v in values.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--init", "--mimic", "--vqa", "--out", "--result"):
        parser.add_argument(name, required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--more", type=int, default=2)
    parser.add_argument("--local_rank", type=int, default=0)  # the launcher's, unused
    args = parser.parse_args()

    import torch.distributed as dist

    from medtrain.config import load_config
    from medtrain.finetune.loop import finetune

    results = {}
    for task in DATA:
        first = finetune(load_config(f"finetune-{task}-cpu", task_sets(task, args, args.steps)))
        more = task_sets(task, args, args.steps + args.more)
        resumed = finetune(load_config(f"finetune-{task}-cpu", more), resume=True)
        results[task] = {
            "first": first,
            "resumed": resumed,
            "rank": dist.get_rank(),
            "world": dist.get_world_size(),
        }
        print(f"finetune_tasks: {task} done at step {resumed['step']}", flush=True)
    Path(f"{args.result}-rank{dist.get_rank()}.json").write_text(json.dumps(results, default=str))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
