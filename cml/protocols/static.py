"""static: one step of every class (the non-continual reference)."""

from __future__ import annotations

from cml.protocols.class_incremental import ordered_steps
from cml.registry import Protocol


def build(cfg, data):
    return ordered_steps(cfg, data, lambda n: [n])


DECLARATION = Protocol(build=build, help="one step of all classes")
