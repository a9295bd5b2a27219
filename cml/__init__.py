"""cml: continual multi-label learning on Avalanche."""

__version__ = "0.1.0"
