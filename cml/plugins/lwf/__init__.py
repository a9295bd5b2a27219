"""lwf: multi-label Learning without Forgetting (Li and Hoiem, 2016), per-class Bernoulli
distillation of the previous step's model (plugin.py has the details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import CAPABILITIES, MODELS, Plugin
from cml.core.schema import option


@dataclass
class LwfOptions:
    weight: float = option(1.0, low=0, help="lwf: weight of the distillation loss on the old classes' logits")
    temperature: float = option(
        2.0, positive=True, help="lwf: temperature T of the old and new sigmoids (loss scaled by T^2)"
    )
    feature_weight: float = option(
        0.0,
        low=0,
        help="lwf: weight of distilling the old classes' per-label features (models that emit label_features)",
    )


def check(cfg, options: LwfOptions) -> str | None:
    """Its need of label_features is conditional (feature_weight > 0), so it is checked here and
    not by `needs`, but against the same vocabulary."""
    if options.feature_weight and "label_features" not in MODELS.get(cfg.model.name).capabilities:
        return (
            f"strategy.lwf.feature_weight: the model {cfg.model.name!r} has no per-label features to "
            f"distil (label_features: {CAPABILITIES['label_features']}; models that have them: "
            f"{', '.join(MODELS.names(capabilities='label_features'))}); set it to 0"
        )
    return None


def build(cfg, scenario):
    from cml.plugins.lwf.plugin import MultiLabelLwF

    o = cfg.strategy.lwf
    return MultiLabelLwF(o.weight, o.temperature, o.feature_weight)


DECLARATION = Plugin(
    build=build,
    kind="loss",
    options=LwfOptions,
    uses_previous_model=True,
    check=check,
    help="distil the previous step's model, one Bernoulli per old class",
)
