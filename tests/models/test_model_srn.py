"""SRN specifics: the stride-16 stage, the regulariser kernel, the branches by hand, errors."""

import pytest
import torch
from tests_helpers import make_model

from cml.config import load_config
from cml.core.errors import UserError
from cml.losses.bce.loss import masked_bce
from cml.models._build import build_model
from cml.models.srn.model import stride16_stage

SMALL = {"attention_width": 8, "regularizer_width": 4, "regularizer_filters": 8}


@pytest.mark.parametrize(
    "backbone,size,stage,grid", [("test_resnet", 32, 3, 2), ("test_resnet", 64, 3, 4), ("test_efficientnet", 64, 3, 4)]
)
def test_stride16_stage_and_kernel_follow_the_input(backbone, size, stage, grid):
    model = make_model("srn", backbone=backbone, num_classes=3, image_size=size, **SMALL)
    assert model.stage == stage and model.backbone.feature_info[stage]["reduction"] == 16
    grouped = model.regularizer[3]
    assert grouped.weight.shape == (8, 1, grid, grid) and grouped.groups == 4


def test_branches_by_hand():
    torch.manual_seed(0)
    model = make_model("srn", backbone="test_resnet", num_classes=3, image_size=64, **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, full=True)
        final, mid = model.forward_features(x)
        maps = model.attention_maps(model.attention(mid))  # (2, 3, 4, 4)
        a = torch.exp(maps) / torch.exp(maps).sum((2, 3), keepdim=True)
        s = model.confidence(mid)
        torch.testing.assert_close(out["attention_logits"], (a * s).sum((2, 3)))
        u = a * torch.sigmoid(s)
        h = torch.relu(
            torch.nn.functional.conv2d(u, model.regularizer_in.weight[:, :, None, None], model.regularizer_in.bias)
        )
        h = torch.relu(model.regularizer[1](h))
        h = torch.relu(model.regularizer[3](h)).flatten(1)  # (2, 8): one value per filter
        regularized = h @ model.regularizer_fc.weight.T + model.regularizer_fc.bias
        main = model.main(final.mean((2, 3)))
        torch.testing.assert_close(out["regularized_logits"], regularized)
        torch.testing.assert_close(out["logits"], 0.5 * main + 0.5 * regularized)
        torch.testing.assert_close(out["label_features"], torch.einsum("bchw,bkhw->bck", a, mid))


def test_new_regulariser_inputs_start_at_zero():
    model = make_model("srn", backbone="test_resnet", num_classes=3, image_size=32, **SMALL)
    first = model.regularizer_in.weight.detach().clone()
    model.regularizer_in.grow(5)
    assert torch.equal(model.regularizer_in.weight[:, :3], first) and first.abs().sum() > 0
    assert torch.equal(model.regularizer_in.weight[:, 3:], torch.zeros(4, 2))


def test_loss_weights():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    model = make_model(
        "srn", backbone="test_resnet", num_classes=3, image_size=32, main_weight=2.0, attention_weight=0.0, **SMALL
    )
    with torch.no_grad():
        out = model(x, full=True)
        terms = model.loss_terms(out, y, masked_bce)
    assert set(terms) == {"main"}
    assert float(terms["main"]) == pytest.approx(2 * float(masked_bce(out["main_logits"], y)))


class NoStride16:
    feature_info = [{"reduction": 4}, {"reduction": 8}, {"reduction": 32}]

    def forward_intermediates(self):
        pass


def test_backbone_without_stride16_stage():
    with pytest.raises(UserError, match=r"model.backbone: 'x' has no stride-16 stage \(stage reductions: 4, 8, 32\)"):
        stride16_stage(NoStride16(), "x")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.backbone=test_vit3"],
            r"data.image_size: 32 px input cannot go through 'test_vit3' to its stride-16 "
            r"stage \(AssertionError: Input height \(32\) doesn't match model \(160\)",
        ),
    ],
)
def test_bad_input_is_one_clear_error(overrides, message):
    cfg = load_config(None, ["model.name=srn", "model.backbone=test_resnet", "data.image_size=32"] + overrides)
    with pytest.raises(UserError, match=message):
        build_model(cfg)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.options={regularizer_filters: 100}"],
            "model.options.regularizer_filters: 100 is not a multiple of regularizer_width 512",
        ),
        (["model.options={image_size: 64}"], "unknown key 'model.options.image_size'"),
    ],
)
def test_bad_options_are_refused_with_the_config(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, ["model.name=srn", "model.backbone=test_resnet", "data.image_size=32"] + overrides)


def test_input_of_another_size_is_refused():
    model = make_model("srn", backbone="test_resnet", num_classes=3, image_size=32, **SMALL)
    with pytest.raises(ValueError, match=r"srn was built for 32 px inputs"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(UserError, match="srn: image_size is required"):
        make_model("srn", backbone="test_resnet")
