"""static: one step of every class (the non-continual reference)."""

from __future__ import annotations

from cml.core.registry import Protocol


def build(cfg, data):
    from cml.protocols.split import ordered_steps

    return ordered_steps(cfg, data, lambda n: [n])


DECLARATION = Protocol(build=build, help="one step of all classes")
