"""class-incremental: B-C steps, `scenario.base` classes first and `scenario.increment` per step
after, in `scenario.order` (docs/protocols.md)."""

from __future__ import annotations

from cml.core.registry import Protocol


def build(cfg, data):
    from cml.protocols.split import ordered_steps, step_sizes

    return ordered_steps(cfg, data, lambda n: step_sizes(n, cfg.scenario.base, cfg.scenario.increment))


DECLARATION = Protocol(build=build, name="class-incremental", help="B-C steps")
