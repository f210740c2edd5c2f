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


def test_presets_of_each_command():
    """pretrain lists and accepts pretraining presets only, finetune its own."""
    pretrain, finetune = available_presets("pretrain"), available_presets("finetune")
    assert {"tiny-cpu", "base-h100"} <= set(pretrain) and not set(pretrain) & set(finetune)
    assert {"finetune-cls-cpu", "finetune-vqa-cpu", "finetune-report-cpu"} <= set(finetune)
    assert sorted(pretrain + finetune) == available_presets()
    with pytest.raises(ConfigError, match=r"not a pretrain preset; valid presets: \['base-h100'"):
        load_config("finetune-cls-cpu", kind="pretrain")
    with pytest.raises(ConfigError, match="unknown preset 'x'; valid presets: \\['finetune-cls"):
        load_config("x", kind="finetune")
    assert load_config("finetune-vqa-cpu", kind="finetune").finetune.task == "vqa"


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


# ------------------------------------------------------------ bounds outside data/ and train/
# Each check of models/, losses/, eval/ config: the bad value as a preset override, the one-line
# ConfigError the composition makes of the component's ValueError.


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.vision.depths=[]"], "vision.depths needs at least one stage"),
        (["model.vision.num_heads=[3,4,8]"], "stage 0 width 32 (embed_dim 32 x 2^0) is not"),
        (["model.vision.num_heads=[2,4,6]"], "stage 2 width 128 (embed_dim 32 x 2^2)"),
        (["model.vision.embed_dim=0"], "embed_dim, window_size, in_chans >= 1"),
        (["model.vision.drop_path_rate=.nan"], "drop_path_rate must be in [0, 1), got nan"),
        (["model.vision.drop_path_rate=1.0"], "drop_path_rate must be in [0, 1), got 1.0"),
        (
            ["model.vision.img_size=136", "model.vision.window_size=34"],
            "3 stages halve the patch grid 34",
        ),
        (["model.text.dropout=-0.1"], "model.text.dropout must be in [0, 1), got -0.1"),
        (["model.text.dropout=.inf"], "model.text.dropout must be in [0, 1), got inf"),
        (["model.text.num_heads=3"], "hidden_size 128 not divisible by num_heads 3"),
        (["model.text.max_length=4"], "model.text.max_length must be >= 8, got 4"),
        (["model.text.intermediate_size=0"], "model.text sizes must be >= 1"),
        (["model.fusion.num_heads=0"], "num_heads >= 1, mlp_ratio > 0; got 1, 0, 4.0"),
        (["model.fusion.mlp_ratio=.nan"], "model.fusion.mlp_ratio must be a finite number"),
        (["model.fusion.mlp_ratio=-1"], "mlp_ratio > 0; got 1, 4, -1.0"),
        (["model.fusion.mlp_ratio=0.001"], "mlp_ratio 0.001 x width 128 leaves an empty MLP"),
        (["model.fusion.dropout=1"], "model.fusion.dropout must be in [0, 1), got 1.0"),
        (["model.fusion.num_heads=3"], "fusion.num_heads 3 does not divide the fusion width 128"),
        (["model.embed_dim=0"], "model.embed_dim must be >= 1, got 0"),
        (["model.init_logit_scale=0"], "init_logit_scale must be in (0, max_logit_scale]"),
        (["model.init_logit_scale=.nan"], "init_logit_scale must be in (0, max_logit_scale]"),
        (["model.init_logit_scale=200"], "got 200.0 (max 100.0)"),
        (["model.max_logit_scale=.inf"], "model.max_logit_scale must be a finite number, got inf"),
        (["loss.mlm_weight=.nan"], "loss.mlm_weight must be a finite number, got nan"),
        (["loss.contrastive_weight=.inf"], "contrastive_weight must be a finite number, got inf"),
        (["loss.contrastive_weight=-1"], "loss weights must be >= 0"),
        (
            ["loss.contrastive_weight=0", "loss.mlm_weight=0"],
            "at least one of loss.contrastive_weight, loss.mlm_weight must be > 0",
        ),
        (["eval.batch_size=0"], "eval.batch_size must be >= 1, got 0"),
        (["eval.recall_at=[]"], "eval.recall_at needs ranks k >= 1, got []"),
        (["eval.recall_at=[0,5]"], "eval.recall_at needs ranks k >= 1, got [0, 5]"),
        (["eval.recall_at=[1,5,5]"], "eval.recall_at lists a rank twice: [1, 5, 5]"),
        (["eval.findings=[Edema,Oedema]"], "eval.findings ['Oedema'] unknown; valid: ["),
    ],
)
def test_model_loss_eval_bounds_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config("tiny-cpu", overrides)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_a_timm_vision_model_is_checked_on_its_four_stages():
    """base-h100 names a timm Swin (its own widths and heads); the grid still halves 3 times."""
    cfg = load_config("base-h100", ["model.vision.num_heads=[5,5,5,5]"])  # timm's own heads
    assert cfg.model.vision.num_heads == (5, 5, 5, 5)
    with pytest.raises(ConfigError, match="stage 0 width 96"):  # the same heads, explicit dims
        load_config("base-h100", ["model.vision.num_heads=[5,5,5,5]", "model.vision.model_name="])
    with pytest.raises(ConfigError, match=r"4 stages halve the patch grid 20 .* divisible by 8"):
        load_config("base-h100", ["model.vision.img_size=80", "model.vision.window_size=5"])


def test_eval_findings_are_the_prompted_labels():
    from medtrain.data.labels import CHEXPERT_LABELS
    from medtrain.eval.prompts import FINDING_PROMPTS

    assert tuple(FINDING_PROMPTS) == CHEXPERT_LABELS  # what eval.findings is checked against
    assert load_config("tiny-cpu", ["eval.findings=[Edema]"]).eval.findings == ("Edema",)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"n": 0}, "need n >= 1 and image_size >= 32, got 0, 512"),
        ({"phi_fraction": float("nan")}, "phi_fraction must be in [0, 1], got nan"),
        ({"lateral_fraction": 1.5}, "lateral_fraction must be in [0, 1], got 1.5"),
        ({"split_fractions": (float("nan"), 0.5, 0.5)}, "3 non-negative values summing to 1"),
        ({"split_fractions": (0.5, 0.5, float("inf"))}, "3 non-negative values summing to 1"),
        ({"split_fractions": (0.8, 0.3, -0.1)}, "3 non-negative values summing to 1"),
    ],
)
def test_synth_config_bounds(kwargs, message):
    from medtrain.synth.config import SynthConfig

    with pytest.raises(ValueError) as info:
        SynthConfig(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_synth_bounds_reach_the_cli_as_one_line_errors(run_cli):
    proc = run_cli("data", "synth", "--out", "x", "--seed", "-1", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("seed must be >= 0, got -1"), proc.stderr
