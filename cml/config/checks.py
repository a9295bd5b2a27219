"""The checks a config needs beyond types and ranges: registered names, the components' declared
facts and checks, paths that must exist, and keys that depend on each other. Torch-free."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from cml.config.keys import LOG_METRICS, LOGGERS
from cml.core import schema
from cml.core.errors import UserError
from cml.core.hints import did_you_mean
from cml.core.registry import CAPABILITIES, DATASETS, LOSSES, MODELS, PLUGINS, PROTOCOLS, STRATEGIES, section_of
from cml.core.safeyaml import key_name, show


def _path(value: str, key: str, source: str) -> Path:
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user of an unknown user
        raise UserError(f"{source}: {key}: cannot expand the '~' of {show(value)}; unknown user?") from None


def _exists(path: Path, test: str) -> bool:
    try:
        return getattr(path, test)()
    except (OSError, ValueError):  # name too long, ...
        return False


def _lookup(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def model_options(config: Any, source: str = "config") -> Any:
    """`model.options` as the model's declared schema (its defaults filled in); None for a model
    without options. `check_semantics` stores it back in the config."""
    declaration = MODELS.get(config.model.name)
    if dataclasses.is_dataclass(config.model.options):
        return config.model.options
    if declaration.options is None:
        if config.model.options:
            key = next(iter(config.model.options))
            raise UserError(
                f"{source}: unknown key 'model.options.{key_name(key)}'; model {config.model.name!r} has no options"
            )
        return None
    return schema.build(declaration.options, config.model.options, "model.options.", source)


def _check_names(config: Any, source: str) -> None:
    for key, value, reg in (
        ("data.dataset", config.data.dataset, DATASETS),
        ("model.name", config.model.name, MODELS),
        ("strategy.name", config.strategy.name, STRATEGIES),
        ("scenario.protocol", config.scenario.protocol, PROTOCOLS),
        ("train.loss", config.train.loss, LOSSES),
    ):
        if value not in reg.names():
            raise UserError(
                f"{source}: {key}: unknown {reg.kind} {show(value)}{did_you_mean(value, reg.names())}; "
                f"expected one of {', '.join(reg.names())}"
            )
    for plugin in config.strategy.plugins:
        if plugin not in PLUGINS.names():
            raise UserError(
                f"{source}: strategy.plugins: unknown plugin {show(plugin)}"
                f"{did_you_mean(plugin, PLUGINS.names())}; known: {', '.join(PLUGINS.names())}"
            )
        if config.strategy.plugins.count(plugin) > 1:
            raise UserError(f"{source}: strategy.plugins: {plugin!r} is listed twice; expected each plugin once")


def _check_needs(config: Any, source: str) -> None:
    """The chosen plugins' and strategy's `needs` against the chosen model's `capabilities`: one
    check for every pairing, before torch, instead of one in each plugin's check or a `hasattr`
    on the built model, and one message that names the capability and the models that have it."""
    model = MODELS.get(config.model.name)
    chosen = [("strategy.plugins", name, PLUGINS.get(name)) for name in config.strategy.plugins]
    chosen.append(("strategy.name", f"strategy {config.strategy.name}", STRATEGIES.get(config.strategy.name)))
    for key, who, declaration in chosen:
        missing = sorted(declaration.needs - model.capabilities)
        if missing:
            able = ", ".join(MODELS.names(capabilities=declaration.needs)) or "none registered"
            every = "it" if len(declaration.needs) == 1 else f"all of {', '.join(sorted(declaration.needs))}"
            raise UserError(
                f"{source}: {key}: {who} needs a model with "
                + " and ".join(f"{c} ({CAPABILITIES[c]})" for c in missing)
                + f"; model {config.model.name} lacks {'it' if len(missing) == 1 else 'them'}"
                + f"; models that have {every}: {able}"
            )


def _check_requires(config: Any, source: str, key: str, who: str, requires: dict) -> None:
    """A declaration's `requires` ({"scenario.labels": "partial"}), the same for a model and a plugin."""
    for needed, value in requires.items():
        if _lookup(config, needed) != value:
            raise UserError(f"{source}: {key}: {who} needs {needed}: {value}, got {show(_lookup(config, needed))}")


def _check_declarations(config: Any, source: str) -> None:
    """Each chosen component's declared facts and its own check."""
    replay = [p for p in config.strategy.plugins if PLUGINS.get(p).kind == "replay"]
    if len(replay) > 1:
        raise UserError(
            f"{source}: strategy.plugins: {' and '.join(replay)} are both replay buffers; "
            f"expected at most one of {', '.join(PLUGINS.names(kind='replay'))}"
        )
    dataset = DATASETS.get(config.data.dataset)
    if dataset.needs_root and not config.data.root:
        raise UserError(f"{source}: data.root: required for data.dataset {config.data.dataset!r}")
    for key in PROTOCOLS.get(config.scenario.protocol).requires_keys:
        if _lookup(config, key) in (None, "", []):
            raise UserError(f"{source}: {key}: required when scenario.protocol is {config.scenario.protocol}")
    _check_needs(config, source)
    options = model_options(config, source)
    if options is not None:
        config.model.options = options  # typed: cfg.model.options.embed_dim
    model = MODELS.get(config.model.name)
    _check_requires(config, source, "model.name", f"model {config.model.name}", model.requires)
    chosen = [(f"model {config.model.name}", model, options)]
    for name in config.strategy.plugins:
        plugin = PLUGINS.get(name)
        _check_requires(config, source, "strategy.plugins", name, plugin.requires)
        chosen.append((f"plugin {name}", plugin, getattr(config.strategy, section_of(plugin), None)))
    for kind_name, reg, value in (
        ("dataset", DATASETS, config.data.dataset),
        ("loss", LOSSES, config.train.loss),
        ("protocol", PROTOCOLS, config.scenario.protocol),
        ("strategy", STRATEGIES, config.strategy.name),
    ):
        declaration = reg.get(value)
        section = {"dataset": config.data, "loss": config.train, "strategy": config.strategy}.get(kind_name)
        chosen.append((f"{kind_name} {value}", declaration, getattr(section, section_of(declaration), None)))
    for _, declaration, options in chosen:
        message = declaration.check(config, options) if declaration.check else None
        if message:
            raise UserError(f"{source}: {message}")


def _check_log(config: Any, source: str) -> None:
    """log.loggers and log.metrics: known names, each once; wandb needs its package."""
    log = config.log
    for key, names, known in (("log.loggers", log.loggers, LOGGERS), ("log.metrics", log.metrics, LOG_METRICS)):
        for name in names:
            if name not in known:
                hint = did_you_mean(name, known)
                raise UserError(f"{source}: {key}: unknown {show(name)}{hint}; expected any of {', '.join(known)}")
            if names.count(name) > 1:
                raise UserError(f"{source}: {key}: {name!r} is listed twice; expected each once")
    if "wandb" in log.loggers and importlib.util.find_spec("wandb") is None:
        raise UserError(f"{source}: log.loggers: wandb needs the wandb package (pip install wandb)")


def _check_geometry(config: Any, source: str) -> None:
    """keep_aspect: training originals are of many sizes, so they are cropped in the loader."""
    d = config.data
    if d.geometry != "keep_aspect":
        if d.test_resize is not None:
            raise UserError(f"{source}: data.test_resize: used only with data.geometry: keep_aspect; remove it")
        return
    if d.jpeg_draft:
        raise UserError(
            f"{source}: data.jpeg_draft: data.geometry keep_aspect crops the original image, decoded in "
            "full; set data.jpeg_draft: false or data.geometry: squash"
        )
    if config.train.augment_on_device:
        raise UserError(
            f"{source}: train.augment_on_device: data.geometry keep_aspect crops training images of "
            "their own sizes in the loader; set train.augment_on_device: false or data.geometry: squash"
        )
    if d.test_resize is not None and d.test_resize < d.image_size:
        raise UserError(
            f"{source}: data.test_resize: {d.test_resize} is smaller than data.image_size "
            f"{d.image_size}; expected at least the centre crop's size"
        )


def check_semantics(config: Any, source: str, pretrained_may_be_gone: bool = False) -> None:
    """PRETRAINED_MAY_BE_GONE: a resume, whose checkpoint holds the weights (see load_config)."""
    _check_names(config, source)
    d, s = config.data, config.scenario
    paths = [
        ("data.root", d.root),
        ("data.cache_dir", d.cache_dir),
        ("scenario.split_dir", s.split_dir),
        ("model.pretrained", config.model.pretrained),
    ]
    for section in DATASETS.names():  # the datasets' own path options (fields named like files)
        options = getattr(d, section, None)
        for f in dataclasses.fields(options) if options is not None else ():
            if f.metadata.get("path"):
                paths.append((f"data.{section}.{f.name}", getattr(options, f.name)))
    for key, value in paths:
        if isinstance(value, str):
            _path(value, key, source)
    pretrained = config.model.pretrained if not pretrained_may_be_gone else None
    if isinstance(pretrained, str) and not _exists(_path(pretrained, "model.pretrained", source), "is_file"):
        raise UserError(f"{source}: model.pretrained: file not found: {key_name(pretrained, 200)}")
    if isinstance(s.order, str) and s.order not in ("alphabetical", "shuffle"):
        raise UserError(
            f"{source}: scenario.order: expected 'alphabetical', 'shuffle' or a list "
            f"of class names, got {show(s.order)}"
        )
    if s.split_dir and not _exists(_path(s.split_dir, "scenario.split_dir", source), "is_dir"):
        raise UserError(f"{source}: scenario.split_dir: folder not found: {key_name(s.split_dir, 200)}")
    groups = config.eval.groups
    given = [g for g in ("majority", "moderate", "minority") if getattr(groups, g)]
    if given and len(given) < 3:
        raise UserError(
            f"{source}: eval.groups: {', '.join(given)} given; expected all three class lists "
            "(majority, moderate, minority) or none (groups from training counts)"
        )
    for name in given:
        path = _path(getattr(groups, name), f"eval.groups.{name}", source)
        if not _exists(path, "is_file"):
            raise UserError(f"{source}: eval.groups.{name}: file not found: {key_name(getattr(groups, name), 200)}")
    low_high = groups.thresholds
    if len(low_high) != 2 or not 0 <= low_high[0] <= low_high[1] <= 1:
        raise UserError(
            f"{source}: eval.groups.thresholds: expected [low, high] with 0 <= low <= high <= 1, got {low_high}"
        )
    _check_geometry(config, source)
    _check_log(config, source)
    _check_declarations(config, source)
