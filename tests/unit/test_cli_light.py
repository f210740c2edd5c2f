"""The CLI's light paths: every --help, flags generated from config dataclasses, argument errors,
`pretrain --print-config` and `data verify` import none of the heavy libraries."""

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from medtrain.cli.flags import add_dataclass_flags, dataclass_from_args
from medtrain.config import PRESET_DIR, ConfigError, load_config
from medtrain.data.config import ShardConfig
from medtrain.synth.config import SynthConfig

HEAVY = ("torch", "timm", "transformers", "tokenizers", "triton", "cv2", "deepspeed", "numpy")

# Runs `python -m medtrain` (runpy, as the console script) for each argv in ARGVS inside one
# process, then every subcommand's --help, found by walking the parser; prints what was loaded.
WRAPPER = """
import argparse, contextlib, io, json, runpy, sys

def run(argv):
    sys.argv = ["medtrain", *argv]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_module("medtrain", run_name="__main__")
        except SystemExit as e:
            code = e.code
    return code, out.getvalue()

def commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from commands(sub, (*prefix, name))

results = {" ".join(a): run(a) for a in ARGVS}
if HELP_ALL:
    from medtrain.cli import build_parser
    for cmd in commands(build_parser()):
        results[" ".join(cmd) + " --help"] = run([*cmd, "--help"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"results": results, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def run_wrapped(subprocess_env):
    """run_wrapped(argvs, help_all=False, cwd=None) -> {"results": {argv: (code, output)},
    "heavy": [heavy modules loaded]} from one WRAPPER subprocess."""

    def _run_wrapped(
        argvs: list[list[str]], help_all: bool = False, cwd: Path | None = None
    ) -> dict:
        code = f"ARGVS = {argvs!r}\nHELP_ALL = {help_all!r}\nHEAVY = {HEAVY!r}\n" + WRAPPER
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            env=subprocess_env(),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    return _run_wrapped


def test_every_help_path_imports_no_heavy_library(tmp_path, run_wrapped):
    out = run_wrapped([["--help"]], help_all=True, cwd=tmp_path)
    helps = out["results"]
    # The walk found the command groups and their subcommands (not an empty parser).
    expected = {"data synth --help", "data prepare --help", "data verify --help"}
    expected |= {"pretrain --help", "eval --help", "tokenizer train --help"}
    assert expected <= set(helps), sorted(helps)
    for argv, (code, text) in helps.items():
        assert code == 0 and "usage: medtrain" in text, (argv, text[-500:])
    assert out["heavy"] == [], out["heavy"]


def test_print_config_prints_the_resolved_config_without_torch(tmp_path, run_wrapped):
    sets = ["--set", "train.lr=0.003", "--set", "model.fusion.name=merged"]
    out = run_wrapped([["pretrain", "--preset", "tiny-cpu", *sets, "--print-config"]], cwd=tmp_path)
    ((code, text),) = out["results"].values()
    assert code == 0 and out["heavy"] == []
    printed = yaml.safe_load(text)
    preset = yaml.safe_load((PRESET_DIR / "tiny-cpu.yaml").read_text())
    assert printed["train"]["lr"] == 0.003 and printed["model"]["fusion"]["name"] == "merged"
    assert printed["train"]["steps"] == preset["train"]["steps"]  # the rest: the preset's
    assert printed["model"]["vision"]["depths"] == preset["model"]["vision"]["depths"]
    (tmp_path / "printed.yaml").write_text(text)  # and it loads back to the same config
    assert load_config(str(tmp_path / "printed.yaml")) == load_config(
        "tiny-cpu", ["train.lr=0.003", "model.fusion.name=merged"]
    )
    assert not list(tmp_path.glob("runs"))  # nothing was started


# ----------------------------------------------------------------- flags from dataclasses


@dataclass(kw_only=True)
class Example:
    name: str = field(default="a", metadata={"help": "a name", "choices": ("a", "b")})
    count: int = field(default=3, metadata={"help": "how many (100% sure)"})
    ratio: float = 0.5
    verbose: bool = False
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    kinds: tuple[str, ...] = ("X", "Y")
    internal: int = 7

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


def example_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_dataclass_flags(p, Example, exclude=("internal",))
    return p


def test_flags_take_defaults_types_help_and_choices_from_the_fields():
    p = example_parser()
    assert dataclass_from_args(Example, p.parse_args([]), exclude=("internal",)) == Example()
    argv = ["--name", "b", "--count", "5", "--ratio", "0.25", "--verbose"]
    argv += ["--fractions", "0.5", "0.25", "0.25", "--kinds", "A", "B", "C"]
    args = p.parse_args(argv)
    cfg = dataclass_from_args(Example, args, exclude=("internal",))
    assert cfg == Example(
        name="b",
        count=5,
        ratio=0.25,
        verbose=True,
        fractions=(0.5, 0.25, 0.25),
        kinds=("A", "B", "C"),
    )
    assert (
        dataclass_from_args(Example, p.parse_args(["--no-verbose"]), ("internal",)).verbose is False
    )
    text = p.format_help()
    assert "--count COUNT" in text and "how many (100% sure) (default: 3)" in text
    assert "{a,b}" in text and "(default: 0.8 0.1 0.1)" in text and "--internal" not in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--name", "c"], "invalid choice: 'c'"),
        (["--count", "many"], "invalid int value: 'many'"),
        (["--fractions", "0.5", "0.5"], "expected 3 arguments"),
    ],
)
def test_flag_parse_errors_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        example_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_dataclass_validation_becomes_a_config_error():
    args = example_parser().parse_args(["--count", "-1"])
    with pytest.raises(ConfigError, match=r"^data synth: count must be >= 0, got -1$"):
        dataclass_from_args(Example, args, exclude=("internal",), where="data synth")


@pytest.mark.parametrize("cls", [SynthConfig, ShardConfig])
def test_synth_and_prepare_flags_are_every_field_of_their_config(cls):
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, cls)
    flags = {o for a in p._actions for o in a.option_strings} - {"-h", "--help"}
    assert flags == {"--" + f.name.replace("_", "-") for f in dataclasses.fields(cls)}
    assert dataclass_from_args(cls, p.parse_args([])) == cls()  # defaults: the dataclass's own


# -------------------------------------------------------------------- argument errors


def test_data_cli_argument_errors_are_clear(tmp_path, run_wrapped):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    prepare = ["data", "prepare", "--source", "mimic-cxr-jpg", "--root", str(tmp_path)]
    cases = [
        ([*prepare, "--out", str(tmp_path / "s"), "--split", "val"], "invalid choice: 'val'"),
        ([*prepare, "--out", str(a_file)], f"--out {a_file} is a file, not a shard directory"),
        ([*prepare, "--out", str(tmp_path / "s"), "--fit", "stretch"], "data prepare: fit must"),
        (["data", "synth", "--out", str(tmp_path / "o"), "--n", "0"], "data synth: need n >= 1"),
        (
            ["data", "synth", "--out", str(tmp_path / "o"), "--split-fractions", "1", "1", "1"],
            "split_fractions must be 3 non-negative values summing to 1",
        ),
    ]
    out = run_wrapped([argv for argv, _ in cases], cwd=tmp_path)
    for argv, message in cases:
        code, text = out["results"][" ".join(argv)]
        assert code == 2 and message in text and "Traceback" not in text, (argv, text)
    assert not (tmp_path / "s").exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------ data verify


def write_shard_dir(root: Path) -> None:
    """Two tar-named files and a manifest.json recording their sizes and sha256."""
    root.mkdir()
    shards = []
    for name, data in (("shard-000000.tar", b"a" * 1000), ("shard-000001.tar", b"b" * 600)):
        (root / name).write_bytes(data)
        entry = {"name": name, "count": 4, "bytes": len(data)}
        shards.append(entry | {"sha256": hashlib.sha256(data).hexdigest()})
    (root / "manifest.json").write_text(json.dumps({"format": 1, "config": {}, "shards": shards}))


def test_data_verify_reports_changed_shards_and_exits_non_zero(tmp_path, run_wrapped, run_cli):
    shards = tmp_path / "shards"
    write_shard_dir(shards)
    ok = run_wrapped([["data", "verify", "--shards", str(shards)]])
    ((code, text),) = ok["results"].values()
    assert code == 0 and "ok: every shard" in text and ok["heavy"] == []

    (shards / "shard-000001.tar").write_bytes(b"c" * 600)  # same size, other bytes
    proc = run_cli("data", "verify", "--shards", str(shards), check=False, timeout=120)
    assert proc.returncode == 2
    assert f"bad: {shards / 'shard-000001.tar'}" in proc.stdout
    assert "shard-000000.tar" not in proc.stdout
    assert "1 shard(s)" in proc.stderr and "Traceback" not in proc.stderr
