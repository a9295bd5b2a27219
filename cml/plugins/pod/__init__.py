"""pod: PODNet's spatial and flat distillation (Douillard et al., ECCV 2020) as KRT's POD baseline,
over the stages of the model's timm backbone (plugin.py has the details and the weights'
normalisation)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Plugin
from cml.core.schema import option


@dataclass
class PodOptions:
    spatial_weight: float = option(
        0.078125,
        low=0,
        help="pod: weight of the spatial term, per image (KRT's POD baseline: 5 over 64 images per GPU)",
    )
    flat_weight: float = option(
        2.8125,
        low=0,
        help="pod: weight of the pooled-embedding term, per image (KRT's POD baseline: 180 over 64 images per GPU)",
    )
    stages: list[int] = option(
        [1, 2, 3],
        help="pod: backbone stages distilled spatially; stage k has stride 2^(k+1) "
        "(KRT's POD: 1-4, layer1-4, as the KRT configs set; 1-3 is the demo's)",
    )


def check(cfg, options: PodOptions) -> str | None:
    if not options.stages or min(options.stages) < 1:
        return f"strategy.pod.stages: expected a list of stages >= 1 (1: stride 4), got {options.stages}"
    return None


def build(cfg, scenario):
    from cml.plugins.pod.plugin import PodDistillation

    p = cfg.strategy.pod
    return PodDistillation(p.spatial_weight, p.flat_weight, p.stages, scenario)


# whether the backbone has the chosen stages is known once timm builds it: refused before training
DECLARATION = Plugin(
    build=build,
    kind="loss",
    options=PodOptions,
    uses_previous_model=True,
    needs=frozenset({"backbone_stages"}),
    check=check,
    help="PODNet's spatial + flat distillation of the backbone's stages (KRT's POD baseline)",
)
