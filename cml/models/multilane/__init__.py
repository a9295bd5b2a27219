"""multilane: MULTI-LANE (De Min et al., CoLLAs 2024) on a frozen timm ViT, one prompted pathway
per step, no prompt selection at test time (model.py has the details and deviations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from cml.core.registry import Model
from cml.core.schema import option


@dataclass
class MultiLaneOptions:
    selectors: int = option(20, low=1, help="selector tokens per lane (theirs: 20)")
    prompts: int = option(20, low=1, help="K/V prefix prompts per prompted layer (theirs: 20)")
    prompt_layers: int = option(5, low=1, help="prompted blocks, from the first (theirs: 5)")
    patch_size: Optional[int] = option(None, low=1, help="the ViT's patch size (null: the backbone's)")
    depth: Optional[int] = option(None, low=1, help="the ViT's blocks (null: the backbone's)")
    normalize_input: Literal["none", "imagenet", "backbone"] = option(
        "none",
        help="the ViT's input: none = pixels in [0, 1] (theirs); imagenet = ImageNet's mean/std "
        "(their --normalize_input); backbone = its pretrained_cfg's, as cml's other models",
    )


def check(cfg, o: MultiLaneOptions) -> str | None:
    if o.depth is not None and o.prompt_layers > o.depth:
        return f"model.options.prompt_layers: {o.prompt_layers} is more than the ViT's {o.depth} blocks (depth)"
    return None


def build(backbone: str, pretrained, options: MultiLaneOptions, num_classes: int = 0, image_size=None):
    from cml.models.multilane.model import MultiLane

    o = options
    return MultiLane(
        backbone,
        pretrained,
        num_classes,
        image_size,
        o.selectors,
        o.prompts,
        o.prompt_layers,
        o.patch_size,
        o.depth,
        o.normalize_input,
    )


DECLARATION = Model(
    build=build,
    options=MultiLaneOptions,
    test_settings={
        "backbone": "test_vit",
        "options": {"patch_size": 8, "selectors": 2, "prompts": 2, "prompt_layers": 1},
    },
    check=check,
    uses_image_size=True,
    help="frozen ViT, one prompted lane per step (MULTI-LANE)",
)
