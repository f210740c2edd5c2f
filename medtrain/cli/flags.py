"""Command-line flags generated from a config dataclass, so defaults live in one place.

Each field `name` becomes `--name` with dashes (`image_size` -> `--image-size`): its type from the
annotation (int, float, str; bool -> `--flag/--no-flag`; `tuple[float, float, float]` -> 3 values,
`tuple[str, ...]` -> one or more), its default from the field, and `help` / `choices` from the
field's metadata. Validation stays in the dataclass's `__post_init__`: `dataclass_from_args`
turns its ValueError into a one-line ConfigError.

Light: dataclasses and typing only (the help path imports no torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from medtrain.config import ConfigError

SCALARS = (int, float, str)


def _flag_type(tp: Any, where: str) -> tuple[Any, Any]:
    """annotation -> (element type, nargs); nargs None for a single value."""
    if tp in SCALARS:
        return tp, None
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in SCALARS:
            return args[0], "+"
        if args and all(a is args[0] for a in args) and args[0] in SCALARS:
            return args[0], len(args)
    raise TypeError(f"{where}: no command-line flag for type {tp!r}")


def add_dataclass_flags(
    parser: argparse.ArgumentParser, cls: type, exclude: Iterable[str] = ()
) -> None:
    """Add one `--field-name` flag per field of dataclass `cls` (except `exclude`)."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: a flag needs a default")
        flag = "--" + f.name.replace("_", "-")
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f"{f.metadata.get('help', '')} (default: {shown})".lstrip()
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": default,
            "help": help_.replace("%", "%%"),  # argparse %-formats help strings
        }
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        kind, nargs = _flag_type(hints[f.name], f"{cls.__name__}.{f.name}")
        if "choices" in f.metadata:
            kwargs["choices"] = list(f.metadata["choices"])
        if nargs is not None:
            kwargs.update(nargs=nargs, metavar=kind.__name__.upper())
        parser.add_argument(flag, type=kind, **kwargs)


def dataclass_from_args(
    cls: type, args: argparse.Namespace, exclude: Iterable[str] = (), where: str = ""
) -> Any:
    """Build `cls` from the flags `add_dataclass_flags` added; a ValueError of its validation
    becomes ConfigError("<where>: <message>")."""
    skip = set(exclude)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
