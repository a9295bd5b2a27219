"""linear: a timm backbone's pooled feature and one growing linear head (the baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cml.core.registry import Model
from cml.core.schema import option


@dataclass
class LinearOptions:
    head_init: Literal["prior", "default", "normal"] = option(
        "prior",
        help="how a new class starts: prior = bias logit(0.05); default = nn.Linear's own initialisation (PRS's code); "
        "normal = the first step's weights N(0, 0.01), nn.Linear's biases and later rows (KRT's POD baseline)",
    )


def build(backbone: str, pretrained, options: LinearOptions, num_classes: int = 0, image_size=None):
    from cml.models.linear.model import LinearModel

    return LinearModel(backbone, pretrained, num_classes, options.head_init)


DECLARATION = Model(
    build=build,
    options=LinearOptions,
    capabilities=frozenset({"backbone_stages", "embed_classify"}),
    help="pooled backbone feature, one logit per class",
)
