"""Real launches on CPU ranks, read from the session's `ckpt_runs` (conftest.py): 2 ranks through
launchers/local.sh (ZeRO-0), plain `deepspeed` (ZeRO-2), and launchers/multinode_nossh.sh as two
one-rank "nodes" on loopback (ZeRO-3). Resuming them is tested in test_checkpoints.py."""

import pytest

pytestmark = pytest.mark.slow


def test_local_launcher_two_ranks_zero0(ckpt_runs, client_state):
    run = ckpt_runs[0]
    assert "2 rank(s)" in run.stdout and "global batch 16" in run.stdout  # 8 x 2 ranks
    state = client_state(run.path, "step3")
    assert state["step"] == 3 and state["world_size"] == 2
    assert state["data"] == {"0": {"epoch": 0, "micro": 3}, "1": {"epoch": 0, "micro": 3}}


def test_plain_deepspeed_two_ranks_zero2_streams_shards(ckpt_runs, client_state):
    run = ckpt_runs[2]
    assert "2 rank(s)" in run.stdout and "global batch 16" in run.stdout
    stream = client_state(run.path, "step4")["stream"]
    assert sum(n for per in stream["consumed"].values() for n in per.values()) == 4 * 8 * 2


def test_multinode_no_ssh_two_nodes_zero3(ckpt_runs, client_state):
    run = ckpt_runs[3]
    assert "2 rank(s)" in run.stdout and "global batch 16" in run.stdout  # 8 x 1 x 2 nodes
    assert client_state(run.path, "step2")["world_size"] == 2
    assert (run.path / "checkpoints" / "step2" / "medtrain" / "rank00001.json").is_file()
