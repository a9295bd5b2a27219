"""l3a: L3A's network (ICML 2025): a timm backbone, a fixed random buffer layer and the weighted
analytic classifier, trained by the `l3a` strategy (model.py has the details)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Model
from cml.core.schema import option


@dataclass
class L3aModelOptions:
    hidden: int = option(4096, low=1, help="width of the random buffer layer (theirs: 4096 COCO, 8192 VOC)")
    ridge: float = option(1000.0, positive=True, help="ridge term of the analytic classifier (their rg)")


def build(backbone: str, pretrained, options: L3aModelOptions, num_classes: int = 0, image_size=None):
    from cml.models.l3a.model import L3AModel

    return L3AModel(backbone, pretrained, num_classes, options.hidden, options.ridge)


DECLARATION = Model(
    build=build,
    options=L3aModelOptions,
    capabilities=frozenset({"embed_classify", "analytic"}),
    help="frozen backbone + random buffer layer + closed-form classifier (L3A)",
)
