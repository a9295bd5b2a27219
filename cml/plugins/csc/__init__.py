"""csc: CSC's training losses for the `csc` model (Du et al., "Confidence Self-Calibration for
Multi-Label Class-Incremental Learning", ECCV 2024; plugin.py has the details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Plugin
from cml.core.schema import option


@dataclass
class CscOptions:
    alpha: float = option(
        0.5,
        low=0,
        high=1,
        help="csc: weight of the current classes' loss; 1 - alpha weighs "
        "the distillation of the old classes (CSC: 0.5)",
    )
    entropy_weight: float = option(
        0.04, low=0, help="csc: weight of the max-entropy term on the seen classes' sigmoids (CSC's beta -0.04)"
    )


def check(cfg, options):
    """Both set the old classes' targets after the forward: csc leaves them out (-1), pseudo fills
    them in, so the result would depend on their order in the list."""
    if "pseudo" in cfg.strategy.plugins:
        return (
            "strategy.plugins: csc and pseudo both rewrite the old classes' targets (csc leaves them "
            "out of the criterion, pseudo fills them in); expected at most one of them"
        )
    return None


def build(cfg, scenario):
    from cml.plugins.csc.plugin import ConfidenceSelfCalibration

    return ConfidenceSelfCalibration(scenario.steps, cfg.strategy.csc.alpha, cfg.strategy.csc.entropy_weight)


DECLARATION = Plugin(
    build=build,
    kind="loss",
    options=CscOptions,
    uses_previous_model=True,
    check=check,
    needs=frozenset({"label_graph"}),
    help="CSC's current-class loss, distillation and max-entropy terms (needs model csc)",
)
