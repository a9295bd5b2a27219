"""krt: KRT's class-attention model (Dong et al., ICCV 2023): one task token and one head per step
over a shared class-attention block; its per-step tokens are what `tdl` distils (model.py has the
details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cml.core.registry import Model
from cml.core.schema import option
from cml.models._options import divides


@dataclass
class KrtOptions:
    embed_dim: int = option(384, low=1, help="width D of the tokens (KRT: 384 COCO, 768 VOC)")
    heads: int = option(8, low=1, help="heads of the class-attention block (a divisor of embed_dim)")
    init: Literal["authors", "torch"] = option(
        "authors",
        help="authors = KRT's code: class-attention Linears and the first head N(0, 0.01), zero bias, "
        "projection Kaiming normal (fan out); torch = torch's defaults (cml before issue 26)",
    )


def check(cfg, o: KrtOptions) -> str | None:
    return divides(o, "heads", "embed_dim", "expected a divisor of it")


def build(backbone: str, pretrained, options: KrtOptions, num_classes: int = 0, image_size=None):
    from cml.models.krt.model import KrtModel

    return KrtModel(
        backbone, pretrained, num_classes, image_size or 224, options.embed_dim, options.heads, options.init
    )


# the positional embedding is sized from the configured input
DECLARATION = Model(
    build=build,
    options=KrtOptions,
    test_settings={"options": {"embed_dim": 16, "heads": 2}},
    check=check,
    uses_image_size=True,
    capabilities=frozenset({"task_tokens", "backbone_stages"}),
    help="KRT's class attention: a task token and a head per step",
)
