"""Avalanche plugins for multi-label continual learning, one file each, named in `strategy.plugins`."""
