"""pseudo: the previous step's model labels the old classes of the new images (the fixed-threshold
form of KRT's dynamic pseudo-labels, Dong et al., ICCV 2023; plugin.py has the details)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.registry import Plugin
from cml.schema import option


@dataclass
class PseudoOptions:
    threshold: float = option(0.7, low=0, high=1, help="pseudo: the previous model's sigmoid at or above which "
                                                      "an old class becomes a positive target")


def build(cfg, scenario):
    from cml.plugins.pseudo.plugin import PseudoLabels

    return PseudoLabels(cfg.strategy.pseudo.threshold)


# with full labels an old class's 0 is a real negative, which pseudo-labels would overwrite
DECLARATION = Plugin(build=build, options=PseudoOptions, uses_previous_model=True,
                     requires={"scenario.labels": "partial"},
                     help="old classes labelled by the previous model where it is confident")
