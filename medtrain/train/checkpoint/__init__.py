"""Checkpoints of a run directory: the one gate every checkpoint file passes before anything
unpickles it (gate.py), atomic publishing / `latest` fallback / retention (store.py), DeepSpeed's
universal conversion for elastic resume (universal.py), and reading weights back (load.py).

Layout of RUN/checkpoints/:
    latest                  the newest complete tag (written last, atomically)
    step<k>/                one complete tag: DeepSpeed's files + medtrain/ (see store.py)
    .partial-step<k>/       a tag being written (never named by `latest`; removed on the next save)
"""

from medtrain.train.checkpoint.gate import UnsafeCheckpointError, check_tag
from medtrain.train.checkpoint.load import fp32_state_dict, load_run
from medtrain.train.checkpoint.store import CheckpointError, CheckpointStore, Found

__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "Found",
    "UnsafeCheckpointError",
    "check_tag",
    "fp32_state_dict",
    "load_run",
]
