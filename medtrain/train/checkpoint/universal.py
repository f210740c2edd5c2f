"""Elastic resume: DeepSpeed's universal checkpoint conversion of one ZeRO-1/2/3 tag.

A ZeRO-1/2/3 tag holds each rank's slice of the flat optimizer partitions, which only the same
world size can load. deepspeed.checkpoint.ds_to_universal rewrites it as one folder per
parameter (zero/<name>/{fp32,exp_avg,exp_avg_sq,step}.pt) plus the model_states files; an engine
with `checkpoint.load_universal` re-partitions that for its own world size. The source tag passes
the gate first and the converter's own torch.load(weights_only=False) calls run in the gate's
weights-only mode (`weights_only_loads`); the result passes the gate too.

The conversion runs in a scratch folder and is renamed to <tag>_universal only when it finished,
so a folder of that name is always a whole conversion (and is reused by later resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
from pathlib import Path

from medtrain.train.checkpoint.gate import check_tag, weights_only_loads
from medtrain.train.errors import CheckpointError

UNIVERSAL = "_universal"


def universal_tag(tag: str) -> str:
    return f"{tag}{UNIVERSAL}"


def convert(ckpt_dir: Path, tag: str) -> Path:
    """Convert ckpt_dir/tag (a complete ZeRO-1/2/3 tag) into ckpt_dir/<tag>_universal, replacing
    an older conversion; -> the new folder. Single process (rank 0 / `medtrain ckpt`)."""
    from deepspeed.checkpoint import ds_to_universal

    ckpt_dir = Path(ckpt_dir)
    source = ckpt_dir / tag
    check_tag(source)  # before ds_to_universal unpickles anything of it
    if not any(source.glob("*zero_pp_rank_*_optim_states.pt")):
        raise CheckpointError(
            f"{source} is a ZeRO-0 checkpoint (no optimizer shards): it loads on any world size "
            "as it is, no universal conversion needed"
        )
    scratch = ckpt_dir / f".partial-{universal_tag(tag)}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    # ds_to_universal writes `latest_universal` next to its output folder: nest the output one
    # level down so that file stays inside the scratch folder.
    out = scratch / universal_tag(tag)
    args = argparse.Namespace(
        input_folder=str(source),
        output_folder=str(out),
        num_extract_workers=1,  # in-process: no worker pool of unpickling processes
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        inject_missing_state=True,  # our model declares no universal-checkpoint metadata
    )
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), weights_only_loads():
            ds_to_universal.main(args)
    except Exception as exc:  # noqa: BLE001 - one line for the CLI, the converter's log kept
        shutil.rmtree(scratch, ignore_errors=True)
        tail = log.getvalue().strip().splitlines()[-3:]
        raise CheckpointError(
            f"universal conversion of {source} failed: {type(exc).__name__}: {exc} "
            f"(converter output: {' | '.join(tail)})"
        ) from None
    check_tag(out)
    final = ckpt_dir / universal_tag(tag)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(out, final)
    shutil.rmtree(scratch, ignore_errors=True)
    return final


def ensure_universal(ckpt_dir: Path, tag: str) -> tuple[str, str]:
    """-> (the universal tag of `tag`, a note): converted now, or an earlier conversion reused
    after it passes the gate."""
    folder = Path(ckpt_dir) / universal_tag(tag)
    if folder.is_dir():
        check_tag(folder)
        return folder.name, f"checkpoint: reusing the universal conversion {folder}"
    convert(ckpt_dir, tag)
    return folder.name, (
        f"checkpoint: {tag} was written by another world size with ZeRO-partitioned optimizer "
        f"state: converted to the universal checkpoint {folder}"
    )
