"""class-incremental: B-C steps, `scenario.base` classes first and `scenario.increment` per step
after, in `scenario.order` (docs/protocols.md)."""

from __future__ import annotations

from cml.registry import Protocol
from cml.scenarios.split import class_order, make_steps, reorder, step_sizes


def ordered_steps(cfg, data, sizes_of):
    """The data in class order and its steps, of the sizes `sizes_of(n_classes)`."""
    s = cfg.scenario
    data = reorder(data, class_order(data.class_names, s.order, cfg.seed))
    steps = make_steps(data.train.labels, data.test.labels, sizes_of(len(data.class_names)), s.labels,
                       data.test_ignore, data.train.select, data.test.select)
    return data, steps


def build(cfg, data):
    return ordered_steps(cfg, data, lambda n: step_sizes(n, cfg.scenario.base, cfg.scenario.increment))


DECLARATION = Protocol(build=build, name="class-incremental", help="B-C steps")
