"""The launchers in launchers/ as written, on loopback.

Cheap checks run the scripts with a stub `deepspeed` first on PATH that records its argv and
environment (argument parsing, the environment file, MASTER_PORT). forward_signal.sh is checked
against fake launch trees. slurm.sbatch runs under bash with stub `srun` (runs its command here
as node 0) and `scontrol` (prints the node list, records `requeue`), once with the stub deepspeed
and once end to end: a real 2-rank CPU training that gets SLURM's pre-timeout USR1.
The tests run in tmp_path: nothing reads or writes the checkout's runs/ or data/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

STUB_DEEPSPEED = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["STUB_OUT"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
"""

# srun: record the call, drop the options (the scripts pass them as --opt=value or flags), run
# the command here as node 0 of a 1-node job.
STUB_SRUN = """#!/usr/bin/env bash
echo "srun $*" >>"$STUB_LOG"
while [[ "${1:-}" == -* ]]; do shift; done
export SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0
exec "$@"
"""

STUB_SCONTROL = """#!/usr/bin/env bash
echo "scontrol $*" >>"$STUB_LOG"
if [ "$1 $2" = "show hostnames" ]; then tr , '\\n' <<<"$3"; fi
"""


def _write_exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def stubs(tmp_path):
    """A bin/ folder of stubs and the files they record to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exe(bin_dir / "deepspeed", STUB_DEEPSPEED)
    _write_exe(bin_dir / "srun", STUB_SRUN)
    _write_exe(bin_dir / "scontrol", STUB_SCONTROL)
    return bin_dir


def _run(
    repo: Path, script: str, args: list[str], cwd: Path, env: dict, stubs: Path, check=True
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run launchers/SCRIPT with the stubs first on PATH; (process, the stub deepspeed calls)."""
    out = cwd / "deepspeed-calls.jsonl"
    out.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    base.pop("CUDA_VISIBLE_DEVICES", None)
    full = {
        **base,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "HOME": str(cwd / "home"),
        "STUB_OUT": str(out),
        "STUB_LOG": str(cwd / "stub.log"),
        **env,
    }
    proc = subprocess.run(
        ["bash", str(repo / "launchers" / script), *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    calls = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return proc, calls


# ------------------------------------------------------------------------------ local.sh


def test_local_sh_takes_the_count_only_when_it_is_a_number(repo_root, tmp_path, stubs):
    (tmp_path / "home").mkdir()
    _, [call] = _run(repo_root, "local.sh", ["--preset", "x", "--resume"], tmp_path, {}, stubs)
    argv = call["argv"]
    # no nvidia-smi here: one rank; --preset reaches medtrain, not --num_gpus
    assert argv[:2] == ["--num_gpus", "1"] and argv[4:] == [
        "--module",
        "medtrain",
        "pretrain",
        "--preset",
        "x",
        "--resume",
    ]
    port = int(argv[argv.index("--master_port") + 1])
    assert port != 29500 and call["env"]["MASTER_PORT"] == str(port)
    assert call["env"]["MEDTRAIN_LAUNCH_ID"].startswith("local-")

    _, [call] = _run(
        repo_root,
        "local.sh",
        ["2", "--", "--preset", "x"],
        tmp_path,
        {"MASTER_PORT": "23456"},
        stubs,
    )
    assert call["argv"] == [
        "--num_gpus",
        "2",
        "--master_port",
        "23456",
        "--module",
        "medtrain",
        "pretrain",
        "--preset",
        "x",
    ]

    _write_exe(
        stubs / "nvidia-smi", "#!/usr/bin/env bash\nprintf 'GPU 0: a\\nGPU 1: b\\nGPU 2: c\\n'\n"
    )
    _, [call] = _run(repo_root, "local.sh", ["--", "--preset", "x"], tmp_path, {}, stubs)
    assert call["argv"][:2] == ["--num_gpus", "3"]
    # CUDA_VISIBLE_DEVICES: N picks the first N visible devices (DeepSpeed reads the variable)
    _, [call] = _run(
        repo_root,
        "local.sh",
        ["2", "--preset", "x"],
        tmp_path,
        {"CUDA_VISIBLE_DEVICES": "5,6,7"},
        stubs,
    )
    assert "--num_gpus" not in call["argv"] and call["env"]["CUDA_VISIBLE_DEVICES"] == "5,6"

    proc, calls = _run(
        repo_root, "local.sh", ["0", "--preset", "x"], tmp_path, {}, stubs, check=False
    )
    assert proc.returncode == 2 and calls == []
    assert "the rank count must be >= 1, got 0" in proc.stderr


# ---------------------------------------------------------------------- multinode_nossh.sh


def _nossh_env(tmp_path: Path, **extra: str) -> dict:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=2\nnode-b slots=2\n")
    return {"HOSTFILE": str(hostfile), "MASTER_ADDR": "node-a", **extra}


def test_multinode_nossh_exports_the_deepspeed_env_files(repo_root, tmp_path, stubs):
    """--no_ssh makes DeepSpeed's runner skip ~/.deepspeed_env and ./.deepspeed_env; the script
    exports them itself, in DeepSpeed's order (the working directory's file wins)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".deepspeed_env").write_text("NCCL_DEBUG=INFO\nFROM_HOME=1\n")
    (tmp_path / ".deepspeed_env").write_text(
        "# comment\n\nNCCL_DEBUG = WARN \nODD=a b=$HOME 'q'\nPYTHONFAULTHANDLER=1"
    )
    env = _nossh_env(tmp_path, NODE_RANK="1", NCCL_DEBUG="TRACE")
    proc, [call] = _run(repo_root, "multinode_nossh.sh", ["--preset", "x"], tmp_path, env, stubs)
    got = call["env"]
    assert got["NCCL_DEBUG"] == "WARN" and got["FROM_HOME"] == "1"
    assert got["ODD"] == "a b=$HOME 'q'"  # literal: nothing expanded or unquoted
    assert got["PYTHONFAULTHANDLER"] == "1"  # last line without a newline
    assert f"exported the environment in {home / '.deepspeed_env'}" in proc.stderr
    argv = call["argv"]
    assert argv[argv.index("--node_rank") + 1] == "1" and "--no_ssh" in argv
    assert argv[-5:] == ["--module", "medtrain", "pretrain", "--preset", "x"]

    # DS_ENV_FILE names the file, as for DeepSpeed; an absolute name is read alone
    (tmp_path / "custom.env").write_text("ONLY_CUSTOM=yes\n")
    env = _nossh_env(tmp_path, NODE_RANK="0", DS_ENV_FILE=str(tmp_path / "custom.env"))
    _, [call] = _run(repo_root, "multinode_nossh.sh", [], tmp_path, env, stubs)
    assert call["env"]["ONLY_CUSTOM"] == "yes" and "FROM_HOME" not in call["env"]

    (tmp_path / "bad.env").write_text("GOOD=1\nNO_EQUALS_SIGN\n")
    env = _nossh_env(tmp_path, NODE_RANK="0", DS_ENV_FILE=str(tmp_path / "bad.env"))
    proc, calls = _run(repo_root, "multinode_nossh.sh", [], tmp_path, env, stubs, check=False)
    assert proc.returncode == 2 and calls == []
    assert f"{tmp_path / 'bad.env'}:2: expected KEY=VALUE" in proc.stderr


def test_multinode_nossh_master_port_is_derived_from_the_job(repo_root, tmp_path, stubs):
    (tmp_path / "home").mkdir()

    def port(**extra: str) -> str:
        env = _nossh_env(tmp_path, **{"NODE_RANK": "0", **extra})
        _, [call] = _run(repo_root, "multinode_nossh.sh", [], tmp_path, env, stubs)
        argv = call["argv"]
        assert call["env"]["MASTER_PORT"] == argv[argv.index("--master_port") + 1]
        return argv[argv.index("--master_port") + 1]

    assert port(SLURM_JOB_ID="4242") == str(20000 + 4242 % 12000)
    assert port(SLURM_JOB_ID="123456") == str(20000 + 123456 % 12000)
    assert port(SLURM_JOB_ID="4242", MASTER_PORT="31000") == "31000"
    # without a job id: the same on every node (from the master and the hostfile), not 29500
    no_job = port()
    assert no_job == port(NODE_RANK="1") and 20000 <= int(no_job) < 32000
    env = _nossh_env(tmp_path)  # NODE_RANK missing
    proc, calls = _run(repo_root, "multinode_nossh.sh", [], tmp_path, env, stubs, check=False)
    assert proc.returncode != 0 and calls == [] and "set NODE_RANK" in proc.stderr


# ------------------------------------------------------------------------ forward_signal.sh

# A fake rank: records the signals it gets; its own child (a data-loader worker) must get none.
FAKE_RANK = """
import os, signal, subprocess, sys, time
out = sys.argv[1]
signal.signal(signal.SIGUSR1, lambda *_: open(out, "a").write("rank USR1\\n"))
worker = subprocess.Popen([sys.executable, "-c",
    "import signal, sys, time\\n"
    "signal.signal(signal.SIGUSR1, lambda *_: open(sys.argv[1], 'a').write('worker USR1\\\\n'))\\n"
    "time.sleep(30)", out])
open(out + ".ready", "w").close()
time.sleep(30)
"""

# A fake launch.py: argv holds `deepspeed.launcher.launch`, two children as ranks.
FAKE_LAUNCH = """
import subprocess, sys, time
ranks = [subprocess.Popen([sys.executable, "-c", sys.argv[1], f"{sys.argv[2]}.{r}"])
         for r in range(2)]
time.sleep(30)
"""


def test_forward_signal_reaches_only_the_ranks_of_its_launch(repo_root, tmp_path):
    procs = []
    try:
        for launch_id in ("mine", "other"):
            env = {**os.environ, "MEDTRAIN_LAUNCH_ID": launch_id}
            cmd = [sys.executable, "-c", FAKE_LAUNCH, FAKE_RANK, str(tmp_path / launch_id)]
            cmd += ["-m", "deepspeed.launcher.launch"]  # as the runner's command line shows it
            procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        ready = [tmp_path / f"{i}.{r}.ready" for i in ("mine", "other") for r in range(2)]
        deadline = time.time() + 30
        while not all(p.exists() for p in ready) and time.time() < deadline:
            time.sleep(0.1)
        assert all(p.exists() for p in ready)
        script = str(repo_root / "launchers" / "forward_signal.sh")
        proc = subprocess.run(
            ["bash", script, "USR1", "mine"], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("SIGUSR1 -> rank pid") == 2
        time.sleep(0.5)
        for r in range(2):
            assert (tmp_path / f"mine.{r}").read_text() == "rank USR1\n"  # not its worker
            assert not (tmp_path / f"other.{r}").exists()  # another launch: untouched
        for p in procs:
            assert p.poll() is None  # the fake launch.py processes were not signalled
        proc = subprocess.run(
            ["bash", script, "USR1", "nobody"], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 1 and "no rank process of launch nobody" in proc.stderr
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# ---------------------------------------------------------------------------- slurm.sbatch


def _slurm_env(repo_root: Path, tmp_path: Path, job_id: int) -> dict:
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_JOB_NAME": "medtrain",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "MEDTRAIN_LAUNCHERS": str(repo_root / "launchers"),
        "GPUS_PER_NODE": "2",
    }


def test_slurm_sbatch_writes_the_hostfile_and_launches_each_node(repo_root, tmp_path, stubs):
    (tmp_path / "home").mkdir()
    env = _slurm_env(repo_root, tmp_path, 777)
    proc, [call] = _run(repo_root, "slurm.sbatch", ["--preset", "x"], tmp_path, env, stubs)
    hostfile = tmp_path / "medtrain-777.hostfile"
    assert hostfile.read_text() == "localhost slots=2\n"
    argv = call["argv"]
    assert argv[argv.index("--hostfile") + 1] == str(hostfile)
    assert argv[argv.index("--master_addr") + 1] == "localhost"
    assert argv[argv.index("--master_port") + 1] == str(20000 + 777)
    assert argv[-3:] == ["--preset", "x", "--resume"]  # a requeued job resumes
    assert call["env"]["MEDTRAIN_LAUNCH_ID"] == "slurm-777"
    assert "requeue" not in (tmp_path / "stub.log").read_text()  # no signal: no requeue


def _job_id_with_free_port() -> int:
    """A job id whose derived MASTER_PORT (20000 + id % 12000) is free on 127.0.0.1 now."""
    for job_id in range(120000 + os.getpid() % 12000, 144000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 20000 + job_id % 12000))
            except OSError:
                continue
        return job_id
    raise AssertionError("no free port")


@pytest.mark.slow
def test_slurm_pre_timeout_signal_saves_stops_and_requeues(
    repo_root, tmp_path, stubs, synth_mimic, tokenizer_dir, tiny_overrides, subprocess_env
):
    """USR1 to the batch shell (SLURM's --signal=B:USR1@...) reaches both ranks through
    forward_signal.sh; they save a checkpoint before train.steps and exit 0; the job requeues."""
    run, steps = tmp_path / "run", 400
    sets = tiny_overrides(
        synth_mimic,
        tokenizer_dir,
        run,
        **{"train.precision": "fp32", "train.zero_stage": 0, "train.steps": steps},
    )
    job_id = _job_id_with_free_port()
    env = subprocess_env(
        {
            **_slurm_env(repo_root, tmp_path, job_id),
            "PATH": f"{stubs}:{Path(sys.executable).parent}:{os.environ['PATH']}",
            "STUB_LOG": str(tmp_path / "stub.log"),
            "DS_ENV_FILE": str(tmp_path / "none.env"),  # whatever ~/.deepspeed_env holds
            "OMP_NUM_THREADS": "1",
        }
    )
    (stubs / "deepspeed").unlink()  # the real one, from this interpreter's environment
    log = (tmp_path / "job.out").open("w")
    batch = subprocess.Popen(
        ["bash", str(repo_root / "launchers" / "slurm.sbatch"), "--preset", "tiny-cpu", *sets],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        metrics, deadline = run / "metrics.jsonl", time.time() + 600
        while batch.poll() is None and time.time() < deadline:
            if metrics.exists() and "loss/total" in metrics.read_text():
                break  # the first step is logged: the ranks are training
            time.sleep(0.2)
        started = metrics.exists() and "loss/total" in metrics.read_text()
        assert batch.poll() is None and started, (tmp_path / "job.out").read_text()[-3000:]
        batch.send_signal(signal.SIGUSR1)  # the batch shell only, as SLURM's B: does
        rc = batch.wait(timeout=240)
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait()
        log.close()
    out = (tmp_path / "job.out").read_text()
    tail = out[-4000:]
    assert f"master localhost:{20000 + job_id % 12000}" in out, tail
    assert out.count("SIGUSR1 -> rank pid") == 2, tail  # both ranks, not the launchers
    assert "stopping at step" in out.lower(), tail  # the ranks' side (train/loop.py)
    tag = (run / "checkpoints" / "latest").read_text().strip()
    assert tag.startswith("step") and 0 < int(tag[4:]) < steps, tag
    assert rc == 0, tail
    assert f"scontrol requeue {job_id}" in (tmp_path / "stub.log").read_text()
