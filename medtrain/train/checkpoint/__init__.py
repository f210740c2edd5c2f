"""Checkpoints of a run directory: the one gate every checkpoint file passes before anything
unpickles it (gate.py), atomic publishing / `latest` fallback / retention (store.py), DeepSpeed's
universal conversion for elastic resume (universal.py), and reading weights back (load.py).

Layout of RUN/checkpoints/:
    latest                  the newest complete tag (written last, atomically)
    step<k>/                one complete tag: DeepSpeed's files + medtrain/ (see store.py)
    step<k>_universal/      step<k> converted for another world size (universal.py)
    .partial-step<k>/       a tag being written (never named by `latest`; removed on the next save)

Every checkpoint file is opened through gate.py first: resuming (CheckpointStore.find), reading
weights (load_run / fp32_state_dict: also the entry point for exporting), and the conversion.
"""

from medtrain.train.checkpoint.gate import (
    ALLOWED,
    ForeignGlobalError,
    UnsafeCheckpointError,
    check_file,
    check_tag,
)
from medtrain.train.checkpoint.load import fp32_state_dict, load_run
from medtrain.train.checkpoint.store import (
    CheckpointError,
    CheckpointStore,
    Found,
    TagInfo,
    verify_tag,
)

__all__ = [
    "ALLOWED",
    "CheckpointError",
    "ForeignGlobalError",
    "TagInfo",
    "check_file",
    "verify_tag",
    "CheckpointStore",
    "Found",
    "UnsafeCheckpointError",
    "check_tag",
    "fp32_state_dict",
    "load_run",
]
