import re
from pathlib import Path

import pytest

from medtrain.config import ConfigError, RunConfig, available_presets, dump_config, load_config
from medtrain.train.config import TrainConfig


def test_presets_load_and_validate():
    assert {"tiny-cpu", "base-h100"} <= set(available_presets())
    tiny = load_config("tiny-cpu")
    assert isinstance(tiny, RunConfig) and tiny.model.vision.depths == (2, 2, 2)
    base = load_config("base-h100")
    assert (
        base.model.vision.model_name.startswith("swin_base") and base.model.vision.img_size == 512
    )
    assert base.model.text.max_length == 256 and base.train.zero_stage == 2
    assert base.train.batch_layout(8) == (64, 8, 4096)


def test_overrides_with_dotted_paths_and_yaml_values():
    cfg = load_config(
        "tiny-cpu",
        [
            "train.lr=1e-3",
            "model.fusion.name=merged",
            "model.vision.depths=[1,1]",
            "train.activation_checkpointing=true",
        ],
    )
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.model.fusion.name == "merged" and cfg.model.vision.depths == (1, 1)
    assert cfg.train.activation_checkpointing is True


def test_unknown_preset_lists_valid():
    with pytest.raises(ConfigError, match="valid presets: .*tiny-cpu"):
        load_config("tiny-gpu")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"train\.learning_rate.*valid keys under train:.*'lr'"):
        load_config("tiny-cpu", ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config("tiny-cpu", ["optimizer.lr=1"])


def test_wrong_types_and_values_are_config_errors():
    with pytest.raises(ConfigError, match="train.steps: expected int"):
        load_config("tiny-cpu", ["train.steps=many"])
    with pytest.raises(ConfigError, match="zero_stage"):
        load_config("tiny-cpu", ["train.zero_stage=4"])
    with pytest.raises(ConfigError, match="window_size"):
        load_config("tiny-cpu", ["model.vision.window_size=7"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("tiny-cpu", ["train.lr"])


def test_dump_and_reload_round_trip(tmp_path):
    cfg = load_config("tiny-cpu", ["train.steps=7"])
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg


DS_CONFIGS = [
    "cpu.json",
    "zero0_bf16.json",
    "zero1_bf16.json",
    "zero2_bf16.json",
    "zero3_bf16.json",
]


def test_top_level_ds_configs_are_the_package_data(repo_root):
    """One source of truth: ds_configs/ (where users edit) is medtrain/ds_configs/ (shipped)."""
    top, shipped = repo_root / "ds_configs", repo_root / "medtrain" / "ds_configs"
    assert sorted(p.name for p in shipped.glob("*.json")) == DS_CONFIGS
    assert sorted(p.name for p in top.glob("*.json")) == DS_CONFIGS
    for name in DS_CONFIGS:
        assert (top / name).read_bytes() == (shipped / name).read_bytes(), name


def test_ds_config_comes_from_the_working_directory_or_else_the_package(
    tmp_path, monkeypatch, repo_root
):
    from medtrain.train.engine import PACKAGE_DS_CONFIGS, resolve_ds_config_path

    assert PACKAGE_DS_CONFIGS.resolve() == (repo_root / "medtrain" / "ds_configs").resolve()
    monkeypatch.chdir(tmp_path)  # no ds_configs/ here: the shipped files
    assert resolve_ds_config_path(TrainConfig(zero_stage=3)) == PACKAGE_DS_CONFIGS / DS_CONFIGS[4]
    cpu = TrainConfig(ds_config="ds_configs/cpu.json")
    assert resolve_ds_config_path(cpu) == PACKAGE_DS_CONFIGS / "cpu.json"
    (tmp_path / "ds_configs").mkdir()  # a user's edited copy where the run starts wins
    (tmp_path / "ds_configs" / "cpu.json").write_text("{}")
    assert resolve_ds_config_path(cpu) == Path("ds_configs/cpu.json")
    mine = tmp_path / "elsewhere" / "mine.json"  # any other path: as given, never substituted
    mine.parent.mkdir()
    mine.write_text("{}")
    assert resolve_ds_config_path(TrainConfig(ds_config=str(mine))) == mine
    with pytest.raises(FileNotFoundError, match=r"elsewhere/cpu.json not found.*'zero3_bf16"):
        resolve_ds_config_path(TrainConfig(ds_config="elsewhere/cpu.json"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train=3", "train.lr=1e-3"], "train is a config section"),
        (["model.vision=1"], "model.vision is a config section"),
        (["train.lr.x=1"], "train.lr is a value, not a section"),
        (["train.lr=[1,"], "--set train.lr:1:"),
    ],
)
def test_overrides_cannot_replace_a_section_or_hide_a_syntax_error(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("tiny-cpu", overrides)


def test_yaml_syntax_error_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1e-3\n  steps: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    msg = str(info.value)
    assert msg.startswith(f"{bad}:") and "YAML syntax error" in msg and "\n" not in msg
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="a preset is a YAML mapping"):
        load_config(str(scalar))
