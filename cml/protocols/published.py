"""The published numbers of the MLCIL protocols (published.yaml beside this file), and which
protocol a run's config follows, so that `cml compare` prints the papers' numbers beside a run.

Torch-free: read with cml's YAML limits and checked entry by entry, a defect in the file is one
line naming the entry.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from cml.core import safeyaml
from cml.core.errors import UserError

METRICS = ("avg_map", "last_map", "avg_forgetting", "cf1", "macro_f1", "of1")  # as in results.json
FILE = "cml/protocols/published.yaml"


def _entry(protocol: str, entry, weights: dict) -> dict:
    where = f"{FILE}: {protocol}: {entry.get('method') if isinstance(entry, dict) else repr(entry)}"
    if not isinstance(entry, dict) or not {"method", "source", "weights"} <= entry.keys():
        raise UserError(f"{where}: expected a mapping with method, source, weights and metrics")
    unknown = set(entry) - {"method", "source", "weights", *METRICS}
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(unknown)}; expected any of {list(METRICS)}")
    if entry["weights"] not in weights:
        raise UserError(f"{where}: weights {entry['weights']!r} is not one of {sorted(weights)}")
    for key in METRICS:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{where}: {key} {value!r} is not a number")
    return {**entry, "weights": weights[entry["weights"]]}


@cache
def protocols() -> dict[str, dict]:
    return parse(safeyaml.load(resources.files("cml.protocols").joinpath("published.yaml").read_bytes(), FILE))


def parse(raw) -> dict[str, dict]:
    """name -> {"match": {dotted key: value}, "published": [entry, ...]}, entries' weights as text."""
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), dict) for k in ("weights", "protocols")):
        raise UserError(f"{FILE}: expected the mappings `weights` and `protocols`")
    out = {}
    for name, spec in raw["protocols"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("match"), dict) or not spec["match"]:
            raise UserError(f"{FILE}: {name}: expected a non-empty `match` mapping of config keys")
        out[name] = {
            "match": spec["match"],
            "published": [_entry(name, e, raw["weights"]) for e in spec.get("published") or []],
        }
    return out


def protocol_of(config: dict) -> str | None:
    """The protocol whose `match` keys the flattened config holds, every one with its value."""
    missing = object()
    for name, spec in protocols().items():
        if all(config.get(key, missing) == value for key, value in spec["match"].items()):
            return name
    return None


def published(protocol: str) -> list[dict]:
    return protocols()[protocol]["published"]
