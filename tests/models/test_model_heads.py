"""What every multi-label model (dlfl, srn, dr) must do, on a ResNet and a non-ResNet backbone:
output shapes, timm's interface, gradients to every parameter, growth that keeps old outputs."""

import pytest
import timm
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from tests_helpers import make_model, tiny_model_options

from cml.core.registry import MODELS
from cml.losses.bce.loss import masked_bce
from cml.models._parts import feature_map

# each model at its declaration's tiny widths (`Model.test_settings`: fast; the defaults are the
# documented ones); 64 px inputs give the tiny backbones a 2x2 final map, so attention over
# positions has something to choose from
SIZE = 64
# every registered model with per-label features
NAMES = MODELS.names(capabilities="label_features")
CASES = [(m, b) for m in NAMES for b in ("test_resnet", "test_efficientnet")]


class FakeExperience:
    def __init__(self, classes):
        self.classes_in_this_experience = classes


def build(name, backbone, num_classes):
    torch.manual_seed(0)
    return make_model(name, backbone, num_classes, SIZE, **tiny_model_options(name))


def grow(model, classes):
    model.train()
    avalanche_model_adaptation(model, FakeExperience(classes))
    model.eval()


def targets(batch, classes):
    """Every image has labels 0 and 1 (pairs for the discriminative loss) and one more."""
    y = torch.zeros(batch, classes)
    y[:, :2] = 1
    y[torch.arange(batch), 2 + torch.arange(batch) % (classes - 2)] = 1
    return y


@pytest.mark.parametrize("name,backbone", CASES)
def test_outputs_and_timm_interface(name, backbone):
    model = build(name, backbone, 5).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model(x, full=True)
        assert out["logits"].shape == (3, 5) and model.num_classes == 5
        assert out["label_features"].shape[:2] == (3, 5) and out["label_features"].shape[2] > 0
        assert torch.equal(model(x), out["logits"])
        assert torch.equal(model.forward_head(model.forward_features(x)), out["logits"])
        assert torch.equal(model.forward_label_features(x), out["label_features"])
        assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True), out["label_features"])
    model.reset_classifier(7)
    assert model.num_classes == 7 and model(x).shape == (3, 7)


@pytest.mark.parametrize("name,backbone", CASES)
def test_gradients_reach_backbone_and_every_head_parameter(name, backbone):
    model = build(name, backbone, 5).train()
    y = targets(4, 5)
    out = model(torch.randn(4, 3, 64, 64), full=True)
    terms = model.loss_terms(out, y, masked_bce)
    expected = {"dlfl": {"block0", "discriminative"}, "srn": {"main", "attention"}, "dr": {"discriminative"}}[name]
    assert set(terms) == expected
    (masked_bce(out["logits"], y) + sum(terms.values())).backward()
    params = dict(model.named_parameters())
    assert not [n for n, p in params.items() if p.grad is None]
    # timm ResNets zero-init the last BN of each residual branch, so inside a branch the gradient
    # is 0 at init; the stem's is not. Every head parameter (the model's, not its backbone's:
    # `named_head_parameters`, no name prefix) gets a nonzero gradient.
    assert next(model.backbone.parameters()).grad.abs().sum() > 0
    assert not [n for n, p in model.named_head_parameters() if not p.grad.abs().sum() > 0]


@pytest.mark.parametrize("name,backbone", CASES)
def test_growth_keeps_old_parameters_and_outputs(name, backbone):
    model = build(name, backbone, 0)
    grow(model, [0, 1, 2])
    x = torch.randn(3, 3, 64, 64)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x, full=True)
    grow(model, [3, 4])
    with torch.no_grad():
        after = model(x, full=True)
    for key, old in before_state.items():
        new = model.state_dict()[key]
        assert torch.equal(new[tuple(slice(0, s) for s in old.shape)], old), key
    assert after["logits"].shape == (3, 5) and after["label_features"].shape[1] == 5
    for key, value in before.items():
        if torch.is_tensor(value):  # old classes: same outputs (up to float summation order)
            torch.testing.assert_close(after[key][:, :3], value, rtol=0, atol=1e-5, msg=key)
    changed = [k for k, v in model.state_dict().items() if v.shape != before_state[k].shape]
    assert changed  # the per-class parts did grow


@pytest.mark.parametrize("backbone,index", [("test_vit", 5), ("test_mambaout", 3)])
def test_tokens_and_nhwc_features_become_the_nchw_map(backbone, index):
    """ViT tokens (class token dropped) and MambaOut's NHWC output, laid out as timm's own NCHW
    intermediates (the ViT's with its final norm, as forward_features applies it)."""
    m = timm.create_model(backbone, num_classes=0).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = m.forward_intermediates(x, indices=[index], norm=True, intermediates_only=True)[0]
        torch.testing.assert_close(feature_map(m, m.forward_features(x)), expected)


@pytest.mark.parametrize("name", ["dlfl", "dr", "srn"])
def test_vit_backbone(name):
    torch.manual_seed(0)
    model = make_model(name, "test_vit", 4, SIZE, **tiny_model_options(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), full=True)  # test_vit takes any size: a 4x4 grid
    width = 64 if name == "srn" else tiny_model_options(name)["embed_dim"]  # srn: test_vit's tokens
    assert out["logits"].shape == (2, 4) and out["label_features"].shape == (2, 4, width)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_and_channels_last(name):
    """The CUDA path (autocast, channels_last) run on CPU: no dtype clash, finite gradients,
    logits close to float32's."""
    model = build(name, "test_resnet", 5).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = targets(4, 5)
    model.eval()
    with torch.no_grad():
        reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            low = model(x)
        model.train()
        out = model(x, full=True)
    loss = masked_bce(out["logits"], y) + sum(model.loss_terms(out, y, masked_bce).values())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.testing.assert_close(low.float(), reference, rtol=0, atol=0.15)
