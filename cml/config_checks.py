"""The checks a config needs beyond types and ranges: registry names, paths that must exist, and
keys that depend on each other. Imported lazily by `load_config` (it is still torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cml.errors import UserError
from cml.safeyaml import key_name, show

if TYPE_CHECKING:
    from cml.config import Config

REPLAY_PLUGINS = ("herding", "ocdm", "prs", "reservoir")  # share strategy.replay: one at a time


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


def check_semantics(config: Config, source: str) -> None:
    from cml.datasets import DATASETS
    from cml.models import MODELS
    from cml.strategies import PLUGINS, STRATEGIES

    for key, value, registry in (("data.dataset", config.data.dataset, DATASETS),
                                 ("model.name", config.model.name, MODELS),
                                 ("strategy.name", config.strategy.name, STRATEGIES)):
        if value not in registry.names():
            raise UserError(f"{source}: {key}: unknown {registry.kind} {show(value)}; "
                            f"expected one of {', '.join(registry.names())}")
    for plugin in config.strategy.plugins:
        if plugin not in PLUGINS.names():
            known = ", ".join(PLUGINS.names()) or "none yet"
            raise UserError(f"{source}: strategy.plugins: unknown plugin {show(plugin)}; known: {known}")
        if config.strategy.plugins.count(plugin) > 1:
            raise UserError(f"{source}: strategy.plugins: {plugin!r} is listed twice; expected each plugin once")
    d, s = config.data, config.scenario
    for key, value in (("data.root", d.root), ("data.cache_dir", d.cache_dir),
                       ("data.nuswide.images", d.nuswide.images),
                       ("data.list.train", d.list.train), ("data.list.test", d.list.test),
                       ("data.list.classes", d.list.classes), ("scenario.split_dir", s.split_dir),
                       ("model.pretrained", config.model.pretrained)):
        if isinstance(value, str):
            _path(value, key, source)
    replay = [p for p in config.strategy.plugins if p in REPLAY_PLUGINS]
    if len(replay) > 1:
        raise UserError(f"{source}: strategy.plugins: {' and '.join(replay)} are both replay buffers; "
                        f"expected at most one of {', '.join(REPLAY_PLUGINS)}")
    pretrained = config.model.pretrained
    if isinstance(pretrained, str) and not _exists(_path(pretrained, "model.pretrained", source), "is_file"):
        raise UserError(f"{source}: model.pretrained: file not found: {key_name(pretrained, 200)}")
    if isinstance(s.order, str) and s.order not in ("alphabetical", "shuffle"):
        raise UserError(f"{source}: scenario.order: expected 'alphabetical', 'shuffle' or a list "
                        f"of class names, got {show(s.order)}")
    if s.protocol == "split-files" and not s.split_dir:
        raise UserError(f"{source}: scenario.split_dir: required when scenario.protocol is split-files")
    if s.split_dir and not _exists(_path(s.split_dir, "scenario.split_dir", source), "is_dir"):
        raise UserError(f"{source}: scenario.split_dir: folder not found: {key_name(s.split_dir, 200)}")
    groups = config.eval.groups
    given = [g for g in ("majority", "moderate", "minority") if getattr(groups, g)]
    if given and len(given) < 3:
        raise UserError(f"{source}: eval.groups: {', '.join(given)} given; expected all three class lists "
                        "(majority, moderate, minority) or none (groups from training counts)")
    for name in given:
        path = _path(getattr(groups, name), f"eval.groups.{name}", source)
        if not _exists(path, "is_file"):
            raise UserError(f"{source}: eval.groups.{name}: file not found: {key_name(getattr(groups, name), 200)}")
    low_high = groups.thresholds
    if len(low_high) != 2 or not 0 <= low_high[0] <= low_high[1] <= 1:
        raise UserError(f"{source}: eval.groups.thresholds: expected [low, high] with 0 <= low <= high <= 1, "
                        f"got {low_high}")
    if "pseudo" in config.strategy.plugins and s.labels != "partial":
        raise UserError(f"{source}: strategy.plugins: pseudo needs scenario.labels: partial, not {s.labels!r} "
                        "(with full or all labels an old class's 0 is a real negative, which pseudo-labels "
                        "would overwrite)")
    if config.data.dataset in ("coco", "nuswide", "voc") and not config.data.root:
        raise UserError(f"{source}: data.root: required for data.dataset {config.data.dataset!r}")
