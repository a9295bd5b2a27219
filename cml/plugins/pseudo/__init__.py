"""pseudo: the previous step's model labels the old classes of the new images (KRT's pseudo-labels,
Dong et al., ICCV 2023: a fixed threshold, or with `dynamic` their per-step calibration; plugin.py
has the details)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Plugin
from cml.core.schema import option


@dataclass
class PseudoOptions:
    threshold: float = option(
        0.7,
        low=0,
        high=1,
        help="pseudo: the previous model's sigmoid at or above which "
        "an old class becomes a positive target (dynamic: the "
        "first step's starting threshold, KRT 0.8)",
    )
    dynamic: bool = option(
        False,
        help="pseudo: KRT's calibration: at the start of each step the threshold moves "
        "by 0.005 until the previous model gives `target` x n_old / n_classes "
        "old labels per training image (within 0.1); strictly above it",
    )
    target: float = option(
        2.9,
        positive=True,
        help="pseudo dynamic: old-class labels per image if every class were old (KRT: 2.9 COCO, 1.4 VOC)",
    )


def build(cfg, scenario):
    from cml.plugins.pseudo.plugin import PseudoLabels

    p = cfg.strategy.pseudo
    if scenario is None:
        return PseudoLabels(p.threshold, p.dynamic, p.target)
    n_old = [min(step.classes) for step in scenario.steps]  # classes are numbered in step order
    return PseudoLabels(p.threshold, p.dynamic, p.target, len(scenario.class_names), n_old)


# with full labels an old class's 0 is a real negative, which pseudo-labels would overwrite
DECLARATION = Plugin(
    build=build,
    kind="targets",
    options=PseudoOptions,
    uses_previous_model=True,
    requires={"scenario.labels": "partial"},
    help="old classes labelled by the previous model where it is confident",
)
