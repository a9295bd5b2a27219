"""YAML in, a validated `Config` out, before anything heavy is imported: the file (through
`cml.core.safeyaml`'s limits), `--set` overrides, the value checks, `imports:`, the typed build and
the semantic checks. Errors name the file and the dotted key, say what was expected, and suggest
the closest valid key.

A config is data: the modules its `imports:` names are imported, so run, only with the user's
consent (`--allow-imports`, `CML_ALLOW_IMPORTS=1`, or each module given as `--import NAME`), as
Hydra runs `_target_` only from trusted configs; without it the config is refused in one line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from cml.config.checks import check_semantics
from cml.config.keys import Config, config_class
from cml.core import registry, safeyaml, schema
from cml.core.errors import UserError
from cml.core.safeyaml import check_values, show


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key.sub=value`, the value read as YAML (so `[a, b]` is a list and `3` an int)."""
    shown = show(text)
    if "=" not in text:
        raise UserError(f"--set {shown}: expected key.sub=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or key.count(".") >= safeyaml.MAX_DEPTH or not key.isprintable():
        raise UserError(f"--set {shown}: expected key.sub=value with a dotted config key")
    return key, safeyaml.load(value, f"--set {shown}")


def _read(path: str | os.PathLike) -> Any:
    try:
        with open(path, "rb") as fh:
            data = fh.read(safeyaml.MAX_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the config ({err.strerror})") from None
    raw = safeyaml.load(data, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of config keys (like 'train:'), got {show(raw)}")
    return raw


def _merged(base: dict, child: dict) -> dict:
    """CHILD over BASE: mappings merge key by key, any other value replaces the base's."""
    merged = dict(base)
    for key, value in child.items():
        old = merged.get(key)
        merged[key] = _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def load_raw(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """The config file's mapping with its `base:` chain resolved (detectron2's `_BASE_`): BASE is a
    path relative to the file naming it, loaded first, and this file's keys merged over it. The
    resolved mapping is what is validated, what `config.yaml` saves and what `--resume` compares."""
    raw = _read(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    here = Path(path).resolve()
    if not isinstance(base, str) or not base:
        raise UserError(f"{path}: base: expected the path of another config file, got {show(base)}")
    target = (here.parent / base).resolve()
    chain = (*_chain, here)
    if target in chain:
        cycle = " -> ".join(str(p.name) for p in (*chain, target))
        raise UserError(f"{path}: base: {base} makes a cycle ({cycle})")
    if not target.is_file():
        raise UserError(f"{path}: base: {base} is not a file (looked for {target})")
    return _merged(load_raw(target, chain), raw)


ALLOW_IMPORTS = "CML_ALLOW_IMPORTS"
_consent = {"all": False, "modules": frozenset()}  # the command line's, set by consent_to_imports


def _environment_allows() -> bool:
    value = os.environ.get(ALLOW_IMPORTS, "")
    if value not in ("", "0", "1"):
        raise UserError(f"{ALLOW_IMPORTS}={show(value)}: expected 1 (run the modules a config imports) or 0")
    return value == "1"


def consent_to_imports(allow_all: bool, modules: list[str]) -> None:
    """The command line's consent for this process (every torchrun rank parses the same one):
    `--allow-imports` for any config's `imports:`, `--import NAME` for NAME alone, imported now."""
    _environment_allows()  # a bad value is refused even when no config imports anything
    registry.import_components(list(modules), "--import")
    _consent.update(all=allow_all, modules=frozenset(modules))


def _check_consent(imports: list[str], source: str, allowed: bool) -> None:
    refused = [name for name in imports if name not in _consent["modules"]]
    if refused and not (allowed or _consent["all"] or _environment_allows()):
        raise UserError(
            f"{source}: imports: {', '.join(refused)}: a config's imports run code, so only when asked; "
            f"allow them with --allow-imports (or {ALLOW_IMPORTS}=1), or name each with --import NAME"
        )


def load_config(
    path: str | os.PathLike | None, overrides: list[str] = (), resume: bool = False, allow_imports: bool = False
) -> Config:
    """RESUME: the run's checkpoint holds the weights, so `model.pretrained` may be gone (the
    resume checks the file's digest instead: cml.runtime.starting_weights). ALLOW_IMPORTS: the
    caller's consent to `imports:` (a program's own; the command line's is consent_to_imports)."""
    raw: Any = load_raw(path) if path is not None else {}
    source = str(path) if path else "config"
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(raw, key, value)
    if overrides:
        source += " (with --set)"
    check_values(raw, "", source)
    imports = raw.get("imports", [])
    if not schema.matches(imports, list[str]):
        raise UserError(f"{source}: imports: expected a list of module names, got {show(imports)}")
    _check_consent(imports, source, allow_imports)
    registry.import_components(imports, f"{source}: imports")
    config = schema.build(config_class(), raw, "", source)
    check_semantics(config, source, pretrained_may_be_gone=resume)
    return config


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
