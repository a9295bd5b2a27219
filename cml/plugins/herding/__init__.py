"""herding: a replay buffer, iCaRL's herding exemplars per class (Rebuffi et al., CVPR 2017)
(plugin.py has the details and deviations)."""

from __future__ import annotations

from cml.core.registry import Plugin
from cml.plugins._replay_options import ReplayOptions


def build(cfg, scenario):
    from cml.plugins._replay import replay_plugin
    from cml.plugins.herding.plugin import HerdingBuffer

    r = cfg.strategy.replay
    buffer = HerdingBuffer(r.per_class, len(scenario.class_names), cfg.seed, r.herding_repeats)
    return replay_plugin(cfg, scenario, buffer)


DECLARATION = Plugin(
    build=build,
    options=ReplayOptions,
    section="replay",
    kind="replay",
    help="replay buffer: iCaRL's herding exemplars per class (Rebuffi et al., CVPR 2017)",
)
