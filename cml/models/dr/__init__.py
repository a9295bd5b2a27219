"""dr: per-label features by label attention, trained with the discriminative regulariser (after
Hassanin et al., arXiv 2107.11159; model.py has the details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Model
from cml.core.schema import option
from cml.models._options import DiscriminativeOptions


@dataclass
class DrOptions:
    embed_dim: int = option(256, low=1, help="width of the per-label features")
    discriminative: DiscriminativeOptions = option(
        DiscriminativeOptions(), help="the discriminative regulariser (on by default; weight 0 = off)"
    )


def build(backbone: str, pretrained, options: DrOptions, num_classes: int = 0, image_size=None):
    from cml.models._discriminative import discriminative_loss
    from cml.models.dr.model import DR

    return DR(backbone, pretrained, num_classes, options.embed_dim, discriminative_loss(options.discriminative))


DECLARATION = Model(
    build=build,
    options=DrOptions,
    test_settings={"options": {"embed_dim": 16}},
    capabilities=frozenset({"label_features", "backbone_stages"}),
    help="label attention + discriminative regulariser",
)
