"""Continual strategies (`strategy.name`) and the plugins combined with them (`strategy.plugins`)."""

from cml.registry import Registry

STRATEGIES = Registry("cml.strategies", "strategy")
PLUGINS = Registry("cml.strategies.plugins", "plugin")
