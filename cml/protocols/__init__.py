"""Protocols, chosen by `scenario.protocol`: how a dataset's classes and images become steps. One
torch-free file each, declaring the protocol (`DECLARATION = Protocol(...)`, cml/core/registry.py)."""

from cml.core.exports import lazy_exports
from cml.core.registry import Protocol

__getattr__ = lazy_exports(
    __name__,
    {
        "Step": "split",
        "make_step": "split",
        "make_steps": "split",
        "reorder": "split",
        "class_order": "split",
        "step_sizes": "split",
    },
)  # torch-bound: loaded on first use
__all__ = ["Protocol", "Step", "class_order", "make_step", "make_steps", "reorder", "step_sizes"]
