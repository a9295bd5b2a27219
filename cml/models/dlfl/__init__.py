"""dlfl: DLFL (Jia et al., arXiv 2212.01461), one feature per label found by label queries
cross-attending the backbone's feature map (model.py has the details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cml.core.registry import Model
from cml.core.schema import option
from cml.models._options import DiscriminativeOptions, divides


@dataclass
class DlflOptions:
    embed_dim: int = option(256, low=1, help="width of the label queries")
    blocks: int = option(2, low=1, help="self + cross attention blocks")
    heads: int = option(4, low=1, help="attention heads (a divisor of embed_dim)")
    ffn_dim: int = option(512, low=1, help="hidden width of each block's feed-forward")
    dropout: float = option(0.1, low=0, below=1, help="dropout in the blocks")
    deep_supervision: bool = option(True, help="a classifier and a loss per block, not the last only")
    discriminative: Optional[DiscriminativeOptions] = option(None, help="the discriminative regulariser; null = off")


def check(cfg, o: DlflOptions) -> str | None:
    if o.embed_dim % 4:
        return f"model.options.embed_dim: expected a multiple of 4 (2-D sine positions), got {o.embed_dim}"
    return divides(o, "heads", "embed_dim", "expected a divisor of it")


def build(backbone: str, pretrained, options: DlflOptions, num_classes: int = 0, image_size=None):
    from cml.models._discriminative import discriminative_loss
    from cml.models.dlfl.model import DLFL

    o = options
    return DLFL(
        backbone,
        pretrained,
        num_classes,
        o.embed_dim,
        o.blocks,
        o.heads,
        o.ffn_dim,
        o.dropout,
        o.deep_supervision,
        discriminative_loss(o.discriminative),
    )


DECLARATION = Model(
    build=build,
    options=DlflOptions,
    test_settings={"options": {"embed_dim": 16, "heads": 2, "ffn_dim": 32, "discriminative": {"weight": 0.1}}},
    check=check,
    capabilities=frozenset({"label_features", "backbone_stages"}),
    help="label queries cross-attending the feature map",
)
