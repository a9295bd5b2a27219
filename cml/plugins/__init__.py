"""Avalanche plugins for multi-label continual learning, named in `strategy.plugins`: one package
each, whose `__init__.py` declares the plugin (options at `strategy.<section>`, facts) without
torch and whose `plugin.py` implements it on `cml.plugins._base.CmlPlugin` (docs/design.md)."""
