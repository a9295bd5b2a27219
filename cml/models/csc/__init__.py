"""csc: CSC's CI-GCN network (Du et al., ECCV 2024): class-specific features and a growing label
graph convolution, on any timm backbone; trained with the `csc` plugin (model.py has the details)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cml.core.registry import Model
from cml.core.schema import option


@dataclass
class CscModelOptions:
    embed_dim: int = option(1024, low=1, help="width of the class-specific features (theirs: 1024)")
    init: Literal["authors", "prior"] = option(
        "authors",
        help="authors = Kaile-Du/CSC's layers: first classifier without bias, torch's default biases; "
        "prior = cml before issue 26: that classifier with a bias, three biases at logit(0.05)",
    )


def build(backbone: str, pretrained, options: CscModelOptions, num_classes: int = 0, image_size=None):
    from cml.models.csc.model import CSCModel

    return CSCModel(backbone, pretrained, num_classes, options.embed_dim, options.init)


DECLARATION = Model(
    build=build,
    options=CscModelOptions,
    # its graph convolution mixes every class's feature into each (a mean over the classes, the
    # image-specific graph): new classes move the old logits, though no old parameter changes
    test_settings={"options": {"embed_dim": 16}, "old_logits_kept": False},
    capabilities=frozenset({"label_graph"}),
    help="class-specific features + growing label graph convolution (CSC)",
)
