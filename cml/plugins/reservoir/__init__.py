"""reservoir: a replay buffer, reservoir sampling (Vitter's algorithm R) (plugin.py has the details and deviations)."""

from __future__ import annotations

from cml.core.registry import Plugin
from cml.plugins._replay_options import ReplayOptions


def build(cfg, scenario):
    from cml.plugins._replay import replay_plugin
    from cml.plugins.reservoir.plugin import ReservoirBuffer

    r = cfg.strategy.replay
    return replay_plugin(cfg, scenario, ReservoirBuffer(r.size, len(scenario.class_names), cfg.seed))


DECLARATION = Plugin(
    build=build,
    options=ReplayOptions,
    section="replay",
    kind="replay",
    help="replay buffer: reservoir sampling (Vitter's algorithm R)",
)
