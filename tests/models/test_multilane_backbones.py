"""MULTI-LANE refuses, when built, the ViTs whose blocks lack what a lane runs by hand (issue 28,
item 7): each was accepted and then an AttributeError at the first batch. Built tiny (one block,
32-px images, 8-px patches) so that the big variants cost little."""

from types import SimpleNamespace

import pytest
import torch

from cml.core.errors import UserError
from cml.models.multilane.model import MultiLane

REFUSED = {
    "test_vit2": "no class token",  # class_token=False, a register token instead
    "test_vit3": "no class token",
    "test_vit_relpos": "no class token",
    "eva02_tiny_patch14_224": "lacks",  # no layer scale, separate q/k/v projections, rope
    "beit_base_patch16_224": "lacks",
    "cait_xxs24_224": "lacks",
    "xcit_nano_12_p16_224": "lacks",
}


def build(backbone: str) -> MultiLane:
    return MultiLane(backbone, image_size=32, patch_size=8, depth=1, selectors=2, prompts=2, prompt_layers=1)


@pytest.mark.parametrize("backbone", sorted(REFUSED))
def test_a_vit_the_lanes_cannot_run_is_one_line_naming_it(backbone):
    with pytest.raises(
        UserError, match=f"model.backbone: multilane cannot run on '{backbone}': .*{REFUSED[backbone]}"
    ) as err:
        build(backbone)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("backbone", ["test_vit", "vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_a_plain_vit_is_accepted_and_runs_a_batch(backbone):
    model = build(backbone)
    model.train()
    model.lanes.adaptation(SimpleNamespace(n_outputs=3, classes_in_this_experience=[0, 1, 2]))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_attention_with_a_position_bias_is_refused():
    """A ViT with every part but a relative position bias in its attention: a lane would drop it."""
    import timm
    from torch import nn

    from cml.models.multilane.model import unsupported

    vit = timm.create_model("test_vit", img_size=32, patch_size=8, depth=1, num_classes=0)
    assert unsupported(vit) is None
    vit.blocks[0].attn.rel_pos = nn.Identity()
    assert unsupported(vit).startswith("its attention has a relative position bias (rel_pos)")
