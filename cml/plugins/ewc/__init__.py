"""ewc: Elastic Weight Consolidation (Kirkpatrick et al., 2017), separate or online (Schwarz et
al., 2018), with the empirical Fisher of the multi-label criterion (plugin.py has the details)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cml.core.registry import Plugin
from cml.core.schema import option


@dataclass
class EwcOptions:
    weight: float = option(1000.0, low=0, help="ewc: lambda, the penalty is lambda/2 * sum F (theta - theta*)^2")
    mode: Literal["separate", "online"] = option(
        "separate", help="ewc: one penalty per past step, or one decayed sum of Fishers anchored at the last step"
    )
    decay: float = option(0.9, low=0, high=1, help="ewc online: gamma, F = gamma * F_previous + F_step")


def build(cfg, scenario):
    from cml.plugins.ewc.plugin import ElasticWeightConsolidation

    o = cfg.strategy.ewc
    return ElasticWeightConsolidation(o.weight, o.mode, o.decay)


DECLARATION = Plugin(
    build=build, kind="penalty", options=EwcOptions, help="penalise moving the weights the past steps needed"
)
