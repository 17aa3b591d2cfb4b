"""Training options described once, from `TrainConfig`'s fields: the CLI builds its flags and the TUI its form
from these specs, so every field is settable both ways with the same name, help and choices.

Text typed by a person (a form field, a `--set FIELD=VALUE`) is turned into a value by `parse()`, which names
the field and the expected kind when it can't; `TrainConfig` itself then checks the range.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass

from tuitune.core.training.config import DERIVED, ConfigError, TrainConfig


@dataclass(frozen=True)
class OptionSpec:
    name: str  # the field name; the CLI flag is --name-with-dashes
    kind: str  # bool | int | float | str | choice | list
    help: str
    default: object  # None: unset (the presets decide)
    optional: bool  # None is allowed (unset = preset)
    choices: tuple[str, ...] = ()  # for kind "choice": the values; for "int": keywords allowed besides numbers

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _kind(annotation) -> tuple[str, bool, tuple[str, ...]]:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", False, tuple(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            kind, _, choices = _kind(rest[0])
            return kind, optional, choices
        if int in rest and len(rest) == 2:  # a number or a keyword, e.g. gpus: 2 or "all"
            other = next(a for a in rest if a is not int)
            if typing.get_origin(other) is typing.Literal:
                return "int", optional, tuple(str(a) for a in typing.get_args(other))
        return ("list" if any(typing.get_origin(a) is list for a in rest) else "str"), optional, ()
    if origin is list:
        return "list", False, ()
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation, "str"), False, ()


def option_specs() -> list[OptionSpec]:
    """One spec per user-settable TrainConfig field, in the config's order (derived fields left out)."""
    out = []
    for name, f in TrainConfig.model_fields.items():
        if name in DERIVED:
            continue
        kind, optional, choices = _kind(f.annotation)
        default = None if f.default_factory is not None else f.default
        out.append(OptionSpec(name, kind, f.description or "", default, optional, choices))
    return out


def spec(name: str) -> OptionSpec:
    for s in option_specs():
        if s.name == name:
            return s
    known = ", ".join(s.name for s in option_specs())
    raise ConfigError(f"{name!r} is not a training setting; known settings: {known}")


_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


def parse(name: str, text: str) -> object:
    """The value of setting `name` typed as `text`; an empty text means unset (None) where that is allowed."""
    s = spec(name)
    raw = text.strip()
    if s.kind in ("choice", "int") and raw in s.choices:
        return raw
    if not raw or raw.lower() in ("none", "null", "unset", "preset"):
        if s.optional:
            return None
        if s.kind == "list":
            return []
        if s.kind == "str" and s.default == "":
            return ""
        raise ConfigError(f"{name}: a value is required (default {s.default!r})")
    try:
        if s.kind == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError
        if s.kind == "int":
            return int(raw)
        if s.kind == "float":
            v = float(raw)
            if not math.isfinite(v):
                raise ValueError
            return v
    except ValueError:
        expected = {"bool": "true or false", "int": "a whole number", "float": "a number"}[s.kind]
        if s.choices:
            expected += " or " + " or ".join(s.choices)
        raise ConfigError(f"{name}: {raw!r} is not {expected}") from None
    if s.kind == "choice" and raw not in s.choices:
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(s.choices)}")
    if s.kind == "list":
        return [p.strip().strip("'\"") for p in raw.strip("[]").split(",") if p.strip()]
    return raw


def show(value: object) -> str:
    """A value as a person types it back (the inverse of parse)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
