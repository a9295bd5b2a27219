"""tdl: KRT's token distillation (Dong et al., ICCV 2023), 1 - cos between the previous and the
current model's per-step tokens (plugin.py has the details and the weight's normalisation)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Plugin
from cml.core.schema import option


@dataclass
class TdlOptions:
    weight: float = option(
        1.5625,
        low=0,
        help="tdl: lambda of KRT's token distillation, a per-image ratio to the "
        "classification loss (KRT's 100 over 64 images per GPU on COCO B0; "
        "300/64 B40, 80/64 VOC)",
    )


def build(cfg, scenario):
    from cml.plugins.tdl.plugin import TokenDistillation

    return TokenDistillation(cfg.strategy.tdl.weight, scenario)


DECLARATION = Plugin(
    build=build,
    kind="loss",
    options=TdlOptions,
    uses_previous_model=True,
    needs=frozenset({"task_tokens"}),
    help="KRT's token distillation of the previous step's task tokens",
)
