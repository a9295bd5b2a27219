"""train.sync_batchnorm's conversion keeps timm's fused norm + activation layers (BatchNormAct2d,
in TResNet and EfficientNet): the converted model computes what the original does.

SyncBatchNorm in eval mode normalises with its running statistics, without a process group, also
on the CPU, so the conversion is checked here against the unconverted model's output."""

import copy

import pytest
import timm
import torch
from timm.layers import BatchNormAct2d

from cml.runtime.distributed import sync_batchnorm


@pytest.fixture
def efficientnet():
    """timm's test EfficientNet in eval mode, with running statistics and affine parameters far
    from their initial values (a fresh norm is nearly the identity and would hide a lost layer)."""
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=5).eval()
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.normal_()
            norm.bias.data.normal_()
    return model


def test_every_fused_norm_still_applies_its_activation(efficientnet):
    """Each norm on its own: torch's converter keeps `act` as a child module but never calls it."""
    before = dict(efficientnet.named_modules())
    after = dict(sync_batchnorm(copy.deepcopy(efficientnet)).named_modules())
    fused = [name for name, m in before.items() if isinstance(m, BatchNormAct2d)]
    assert any(isinstance(before[name].act, torch.nn.SiLU) for name in fused)  # activations to lose
    for name, norm in before.items():
        if isinstance(norm, torch.nn.BatchNorm2d):
            assert isinstance(after[name], torch.nn.SyncBatchNorm), name
            x = torch.randn(2, norm.num_features, 4, 4)
            with torch.no_grad():
                torch.testing.assert_close(after[name](x), norm(x), rtol=0, atol=0, msg=name)


def test_converted_model_computes_the_same_output(efficientnet):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = efficientnet(x)
        got = sync_batchnorm(copy.deepcopy(efficientnet))(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
