"""Typed option schemas: dataclasses whose fields carry a default, a range and a one-line help.

The core config keys and every component's declared options use this one mechanism, so they are
parsed, range-checked, listed by `cml keys` and refused ("did you mean") the same way, before
torch is imported.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from typing import Any, Literal, Union

from cml.core.errors import UserError
from cml.core.hints import did_you_mean
from cml.core.safeyaml import check_values, key_name, show

SEED_MAX = 2**32 - 1  # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1


def option(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    below: float | None = None,
    path: bool = False,
    help: str = "",
    **kw: Any,
) -> Any:
    """A schema field: `low`/`high` inclusive bounds, `below` an exclusive upper bound, `positive` > 0;
    `path`: a file or folder name, whose `~` is expanded while the config is checked."""
    meta = {"low": low, "high": high, "positive": positive, "below": below, "path": path, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata=meta)
    return field(default=default, metadata=meta, **kw)


def nested_dataclass(tp: Any) -> type | None:
    """The dataclass of a field typed `Options` or `Optional[Options]` (null switches it off)."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        classes = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return classes[0] if classes else None
    return None


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        inner = type_name(typing.get_args(tp)[0])
        return "a list of " + {"an integer": "integers", "a string": "strings"}.get(inner, inner)
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a mapping",
        type(None): "null",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(tp))
    if origin is list:
        return isinstance(value, list) and all(matches(v, typing.get_args(tp)[0]) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return isinstance(value, tp)


def yaml11_float(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def bound(meta) -> str:
    """The range of a field as a phrase ("" when it has none)."""
    low, high, below = meta.get("low"), meta.get("high"), meta.get("below")
    if meta.get("positive"):
        return "> 0"
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None and below is not None:
        return f"in [{low}, {below})"
    return f">= {low}" if low is not None else f"<= {high}" if high is not None else ""


def _in_range(value: float, meta) -> bool:
    low, high, below = meta.get("low"), meta.get("high"), meta.get("below")
    return not (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (below is not None and value >= below)
        or (meta.get("positive") and value <= 0)
    )


def build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """`raw` (a mapping read from YAML) -> an instance of the schema `cls`; a bad key or value is
    one UserError naming `source` and the dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {prefix[:-1] or 'the config'}: expected a mapping of keys, got {show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key_name(key)}"
        if key not in fields:
            hint = did_you_mean(str(key), fields, prefix, cutoff=0.5) or f"; valid keys: {', '.join(fields) or 'none'}"
            raise UserError(f"{source}: unknown key '{dotted}'{hint}")
        tp = hints[key]
        inner = nested_dataclass(tp)
        if inner is not None and (value is not None or tp is inner):
            values[key] = build(inner, value, dotted + ".", source)
            continue
        takes_float = tp is float or float in typing.get_args(tp)
        if takes_float and isinstance(value, str):
            value = yaml11_float(value)  # YAML reads 1e-4 (no dot) as a string
        if not matches(value, tp):
            raise UserError(f"{source}: {dotted}: expected {type_name(tp)}, got {show(value)}")
        check_values(value, dotted, source)
        meta = fields[key].metadata
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(value, meta):
            raise UserError(f"{source}: {dotted}: expected a value {bound(meta)}, got {show(value)}")
        if takes_float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[key] = value
    return cls(**values)


def default_of(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def describe(cls: type, prefix: str = "", note: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows for `cml keys` and docs/config.md; `note` prefixes the help."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.", note)
            continue
        inner = nested_dataclass(tp)
        if inner is not None:
            rows.append(
                (
                    prefix + f.name,
                    "a mapping or null",
                    repr(None if default_of(f) is None else {}),
                    note + f.metadata.get("help", ""),
                )
            )
            rows += describe(inner, f"{prefix}{f.name}.", note)
            continue
        phrase = bound(f.metadata)
        rows.append(
            (
                prefix + f.name,
                type_name(tp) + (" " + phrase if phrase else ""),
                repr(default_of(f)),
                note + f.metadata.get("help", ""),
            )
        )
    return rows
