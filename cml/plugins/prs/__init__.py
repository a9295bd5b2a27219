"""prs: a replay buffer, Partitioning Reservoir Sampling (Kim et al., ECCV 2020)
(plugin.py has the details and deviations)."""

from __future__ import annotations

from cml.core.registry import Plugin
from cml.plugins._replay_options import ReplayOptions


def build(cfg, scenario):
    from cml.plugins._replay import replay_plugin
    from cml.plugins.prs.plugin import PRSBuffer

    r = cfg.strategy.replay
    return replay_plugin(cfg, scenario, PRSBuffer(r.size, len(scenario.class_names), cfg.seed, r.rho))


DECLARATION = Plugin(
    build=build,
    options=ReplayOptions,
    section="replay",
    kind="replay",
    help="replay buffer: Partitioning Reservoir Sampling (Kim et al., ECCV 2020)",
)
