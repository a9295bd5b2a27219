"""Avalanche plugins for multi-label continual learning, named in `strategy.plugins`: one package
each, whose `__init__.py` declares the plugin (options at `strategy.<section>`, facts) without
torch and whose `plugin.py` implements it on `cml.plugins._base.CmlPlugin` (docs/design.md)."""

from cml.core.exports import lazy_exports
from cml.core.registry import Plugin
from cml.core.schema import option

__getattr__ = lazy_exports(
    __name__, {"CmlPlugin": "_base", "build_plugin": "_base", "build_plugins": "_base", "ReplayPlugin": "_replay"}
)  # torch-bound: loaded on first use
__all__ = ["CmlPlugin", "Plugin", "ReplayPlugin", "build_plugin", "build_plugins", "option"]
