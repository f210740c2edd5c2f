"""The gate's weights-only mode: inside `weights_only_loads()` a torch.load that asks for
weights_only=False (as DeepSpeed's readers do) still loads weights only, so a checkpoint file
swapped after the gate checked it cannot run code; DeepSpeed's allowlisted classes still load."""

import os
from pathlib import Path

import pytest
import torch

from medtrain.train.checkpoint.gate import FORCE_WEIGHTS_ONLY, weights_only_loads


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_forced_weights_only_refuses_code_even_when_the_caller_asks_for_full_unpickling(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(FORCE_WEIGHTS_ONLY, raising=False)
    marker, planted = tmp_path / "ran", tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "x": _Planted(marker)}, planted)
    with weights_only_loads(), pytest.raises(Exception, match="exec|Unsupported global"):
        torch.load(planted, map_location="cpu", weights_only=False)
    assert not marker.exists()
    assert FORCE_WEIGHTS_ONLY not in os.environ  # restored on leaving


def test_deepspeed_classes_and_tensors_still_load_in_forced_mode(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    path = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    saved = {"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum(2), "t": torch.arange(5)}
    torch.save(saved, path)
    with weights_only_loads():
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    assert isinstance(loaded["loss_scaler"], LossScaler)
    assert loaded["zero_stage"] == ZeroStageEnum(2)
    assert torch.equal(loaded["t"], torch.arange(5))
