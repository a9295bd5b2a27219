"""l3a: L3A's network (ICML 2025): a timm backbone, a fixed random buffer layer and the weighted
analytic classifier, trained by the `l3a` strategy (model.py has the details)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Model
from cml.core.schema import option


@dataclass
class L3aModelOptions:
    # bounded so that a typo is refused before allocation: the classifier keeps a float64 Gram matrix of
    # hidden^2 * 8 bytes (2 GiB at 16384; 72 TB at 3000000) and its solve two more of that size
    hidden: int = option(
        4096,
        low=1,
        high=16384,
        help="width of the random buffer layer (theirs: 4096 as run, COCO and VOC); its Gram takes hidden^2 x 8 bytes",
    )
    # bounded below: a ridge of 1e-300 adds nothing to a singular Gram matrix, whose float64 solve
    # then fails (a too small ridge for the features' scale is still one line at the solve)
    ridge: float = option(1000.0, low=1e-6, help="ridge term of the analytic classifier (their rg)")


def build(backbone: str, pretrained, options: L3aModelOptions, num_classes: int = 0, image_size=None):
    from cml.models.l3a.model import L3AModel

    return L3AModel(backbone, pretrained, num_classes, options.hidden, options.ridge)


DECLARATION = Model(
    build=build,
    options=L3aModelOptions,
    capabilities=frozenset({"embed_classify", "analytic"}),
    requires={"strategy.name": "l3a"},  # only the l3a strategy fits the closed-form classifier
    help="frozen backbone + random buffer layer + closed-form classifier (L3A)",
)
