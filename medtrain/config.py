"""RunConfig: the component configs composed into one run, loaded from YAML presets.

Each package owns its dataclasses in a light `config.py` (models/config.py, data/config.py,
train/config.py, ...); this module only composes, loads and validates them. Unknown keys are errors
that list the valid choices; CLI overrides use dotted paths: `--set train.lr=1e-4`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medtrain.data.config import DataConfig, MaskingConfig, TokenizerConfig
from medtrain.eval.config import EvalConfig
from medtrain.finetune.config import FinetuneConfig
from medtrain.losses.config import LossConfig
from medtrain.models.config import ModelConfig
from medtrain.train.config import TrainConfig

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A preset, key or value that cannot be used; the message lists the valid choices."""


@dataclass(kw_only=True, slots=True)
class RunConfig:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_finetune_preset(path: Path) -> bool:
    """A fine-tuning preset is one with a top-level `finetune:` section."""
    return any(line.startswith("finetune:") for line in path.read_text().splitlines())


def available_presets(kind: str | None = None) -> list[str]:
    """Shipped preset names: all, or those of `kind` "pretrain" | "finetune"."""
    paths = sorted(PRESET_DIR.glob("*.yaml"))
    if kind is not None:
        paths = [p for p in paths if _is_finetune_preset(p) == (kind == "finetune")]
    return [p.stem for p in paths]


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Turn a YAML value into the annotated type (nested dataclasses, tuples, floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (elem, *_) = typing.get_args(tp)
        return tuple(_coerce(v, elem, where) for v in value)
    if tp is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if tp in (int, str, bool) and not isinstance(value, tp) or (tp is int and value is True):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys"
            f"{' under ' + where if where else ''}: {names}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:  # a component's own __post_init__ validation
        raise ConfigError(f"{where or 'config'}: {e}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _yaml(text: str, where: str) -> Any:
    """yaml.safe_load with a one-line ConfigError naming where:line:column on a syntax error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark is not None else where
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{at}: YAML syntax error: {problem}") from None


def _check_override(parts: list[str], value: Any) -> None:
    """A section (a config dataclass) takes a mapping, never a scalar; only sections have keys."""
    cls: Any = RunConfig
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:  # unknown keys are reported with the valid ones by _build
            return
        tp, path = hints[part], ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(tp):
            if last and not isinstance(value, dict):
                raise ConfigError(
                    f"{path} is a config section; set its fields ({path}.FIELD=VALUE), "
                    f"not {value!r}"
                )
            cls = tp
        elif not last:
            raise ConfigError(f"{path} is a value, not a section: cannot set {'.'.join(parts)}")


def parse_override(item: str) -> dict[str, Any]:
    """'train.lr=1e-4' -> {'train': {'lr': 0.0001}} (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    value = _yaml(raw, f"--set {key}") if raw else ""
    parts = key.strip().split(".")
    _check_override(parts, value)
    out: dict[str, Any] = value
    for part in reversed(parts):
        out = {part: out}
    return out


def load_config(
    preset: str = "tiny-cpu",
    overrides: list[str] | tuple[str, ...] = (),
    *,
    kind: str | None = None,
) -> RunConfig:
    """Load a preset by name (medtrain/presets/NAME.yaml) or YAML path, then apply overrides.
    `kind` ("pretrain" | "finetune", the command's): a shipped preset of the other kind is an
    error, and the error for an unknown name lists the presets of `kind` only."""
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PRESET_DIR / f"{preset}.yaml"
        valid = available_presets(kind)
        if not path.is_file():
            raise ConfigError(
                f"unknown preset {preset!r}; valid presets: {valid} (or a path to a .yaml file)"
            )
        if preset not in valid:
            raise ConfigError(
                f"preset {preset!r} is not a {kind} preset; valid presets: {valid} "
                "(or a path to a .yaml file)"
            )
    values = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a preset is a YAML mapping of sections, got {values!r}")
    for item in overrides:
        values = _merge(values, parse_override(item))
    return _build(RunConfig, values)


def config_yaml(cfg: RunConfig) -> str:
    """The config as YAML that `load_config(path)` reads back (tuples written as lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return [plain(v) for v in x] if isinstance(x, (tuple, list)) else x

    return yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False)


def dump_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(config_yaml(cfg))
