"""srn: Spatial Regularization Network (Zhu et al., CVPR 2017) on a timm backbone's stride-16 map
(model.py has the details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cml.core.registry import Model
from cml.core.schema import option
from cml.models._options import DiscriminativeOptions


@dataclass
class SrnOptions:
    attention_width: int = option(512, low=1, help="channels of the attention branch")
    regularizer_width: int = option(512, low=1, help="channels of the spatial regulariser")
    regularizer_filters: int = option(
        2048, low=1, help="the regulariser's grouped filters (a multiple of regularizer_width)"
    )
    main_weight: float = option(1.0, low=0, help="weight of the main branch's loss")
    attention_weight: float = option(1.0, low=0, help="weight of the attention branch's loss")
    discriminative: Optional[DiscriminativeOptions] = option(None, help="the discriminative regulariser; null = off")


def check(cfg, o: SrnOptions) -> str | None:
    if o.regularizer_filters % o.regularizer_width:
        return (
            f"model.options.regularizer_filters: {o.regularizer_filters} is not a multiple of "
            f"regularizer_width {o.regularizer_width} (one group of filters per channel)"
        )
    return None


def build(backbone: str, pretrained, options: SrnOptions, num_classes: int = 0, image_size=None):
    from cml.models._discriminative import discriminative_loss
    from cml.models.srn.model import SRN

    o = options
    return SRN(
        backbone,
        pretrained,
        num_classes,
        image_size,
        o.attention_width,
        o.regularizer_width,
        o.regularizer_filters,
        o.main_weight,
        o.attention_weight,
        discriminative_loss(o.discriminative),
    )


# the regulariser's kernel covers the whole stride-16 map, so the model is built for data.image_size
DECLARATION = Model(
    build=build,
    options=SrnOptions,
    test_settings={"options": {"attention_width": 16, "regularizer_width": 8, "regularizer_filters": 16}},
    check=check,
    uses_image_size=True,
    capabilities=frozenset({"label_features", "backbone_stages"}),
    help="spatial regularisation network (stride-16 map)",
)
