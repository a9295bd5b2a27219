"""YAML for configs and `--set` values, with limits, so that no input can hang cml or exhaust its
memory, and any failure is one line.

PyYAML's safe loader builds no arbitrary objects, but it does expand nothing and check nothing:
- a "billion laughs" document (nine lines of anchors, each alias list repeating the previous
  one nine times) is composed into a small graph of shared nodes, and everything that later walks
  or copies the config (`dataclasses.asdict`, `yaml.dump`, comparisons) expands it to 10^9 nodes;
- deep nesting (`[[[[...]]]]`) recurses in the composer until Python's recursion limit;
- an alias inside its own anchor (`&a [*a]`) makes a cyclic structure;
- explicit tags with bad values (`!!int x`, `!!timestamp 2020-13-45`) raise ValueError and others,
  not YAMLError.
So the document is read with limits: at most MAX_BYTES of UTF-8 text, nested at most MAX_DEPTH
levels and at most MAX_NODES nodes once every alias is expanded (counted on the composed graph,
without expanding it), no self-referencing alias; any error becomes a UserError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from cml.core.errors import UserError

MAX_BYTES = 1 << 20  # a config is a few kB
MAX_DEPTH = 50  # the config schema is 3 levels deep; model options a few more
MAX_NODES = 100_000  # keys, values and list items, aliases expanded
INT_MAX = 2**63 - 1  # torch's int64: no integer value may exceed it


class _Limit(Exception):
    pass


class _LimitedLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expanded(node: yaml.Node, level: int, memo: dict, active: set) -> tuple[int, int]:
    """(nodes, depth) of `node` with its aliases expanded; raises _Limit past the limits."""
    key = id(node)
    if key in active:
        raise _Limit("an alias refers to the node that contains it")
    if key not in memo:
        active.add(key)
        size, depth = 1, 1
        for child in _children(node):
            child_size, child_depth = _expanded(child, level + 1, memo, active)
            size, depth = size + child_size, max(depth, child_depth + 1)
            if size > MAX_NODES:
                raise _Limit(f"more than {MAX_NODES} values once its aliases are expanded")
        active.discard(key)
        memo[key] = (size, depth)
    if level + memo[key][1] > MAX_DEPTH:
        raise _Limit(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
    return memo[key]


def load(text: str | bytes, source: str):
    """The YAML document in `text` as plain Python data; UserError naming `source` if it is not
    valid YAML or exceeds the limits."""
    if isinstance(text, bytes):
        text = decode(text, source)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise UserError(f"{source}: larger than {MAX_BYTES // 1024} kB; a config is a few kB")
    loader = None
    try:
        loader = _LimitedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, 0, {}, set())
        return loader.construct_document(node)
    except _Limit as err:
        raise UserError(f"{source}: refused: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1}:" if mark else ""
        what = " ".join("; ".join(str(p) for p in (err.context, err.problem) if p).split())
        raise UserError(f"{source}:{where} not valid YAML ({what})") from None
    except Exception as err:  # explicit tags with bad values: ValueError, TypeError, ...
        text = " ".join(str(err).split())[:200]
        raise UserError(f"{source}: not valid YAML ({type(err).__name__}: {text})") from None
    finally:
        if loader is not None:
            loader.dispose()


def decode(data: bytes, source: str, expected: str = "a YAML config") -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a UserError for binary or other encodings."""
    if b"\0" in data[:8192]:
        raise UserError(f"{source}: a binary file, not text; expected {expected} in UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{source}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); save it as UTF-8"
        ) from None


def load_json(path: Path, expected: str, missing: str | None = None):
    """A small JSON file (split files, class lists) as one UserError line whatever is wrong: absent,
    a folder, unreadable, not UTF-8, not JSON, nested past Python's recursion limit."""
    try:
        text = decode(path.read_bytes(), str(path), expected)
    except FileNotFoundError:
        raise UserError(f"{path}: not found; expected {missing or expected}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder; expected {expected}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to read; expected {expected}") from None


def show(value: Any, limit: int = 60) -> str:
    """repr, shortened: error messages stay one readable line whatever the input."""
    if isinstance(value, int) and abs(value) > INT_MAX:
        return f"an integer of {value.bit_length()} bits"  # repr may refuse one of > 4300 digits
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_name(key: Any, limit: int = 60) -> str:
    """A key or path as written when it is short and printable, else its shortened repr."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= limit else show(key, limit)


def check_values(value: Any, dotted: str, source: str) -> None:
    """What no key accepts, anywhere in the document (model.options included): NaN and infinite
    numbers, integers beyond int64, strings with NUL or unpaired surrogates, non-string keys."""
    where = f"{source}: {dotted or 'the config'}"
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_MAX - 1 <= value <= INT_MAX:
        raise UserError(f"{where}: expected an integer of at most 64 bits, got {show(value)}")
    if isinstance(value, str):
        if "\0" in value:
            raise UserError(f"{where}: a string must not contain NUL characters, got {show(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{where}: expected valid Unicode text, got {show(value)}") from None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"{where}: keys must be strings, got {show(key)}")
            check_values(key, dotted, source)
            check_values(item, f"{dotted}.{key_name(key)}" if dotted else key_name(key), source)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            check_values(item, dotted, source)
