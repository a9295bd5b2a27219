"""Every registered loss: -1 targets are left out, targets wider than the head are cut, and the
declared reduction holds (a mean does not change when the batch is repeated, a sum doubles)."""

import pytest
import torch
from torch.nn import functional as F

from cml.core.registry import LOSSES, section_of


def criterion(name):
    declaration = LOSSES.get(name)
    return declaration.build(declaration.options() if declaration.options else None)


@pytest.mark.parametrize("name", LOSSES.names())
def test_contract(name):
    torch.manual_seed(0)
    loss = criterion(name)
    logits = torch.randn(6, 4)
    targets = (torch.rand(6, 7) > 0.5).float()  # 7 dataset classes, a head of 4
    value = loss(logits, targets)
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.equal(value, loss(logits, targets[:, :4]))  # the columns beyond the head are cut
    masked = targets.clone()
    masked[0, 1] = -1
    changed = targets.clone()
    changed[0, 1] = 1 - changed[0, 1]
    masked_changed = changed.clone()
    masked_changed[0, 1] = -1
    assert torch.equal(loss(logits, masked), loss(logits, masked_changed))  # -1: not in the loss
    twice = loss(torch.cat([logits, logits]), torch.cat([targets, targets]))
    expected = {"mean": value, "sum": 2 * value}[LOSSES.get(name).reduction]
    assert torch.allclose(twice, expected, rtol=1e-5)


def test_bce_is_torchs_mean_bce():
    logits, targets = torch.randn(5, 3), (torch.rand(5, 3) > 0.5).float()
    assert torch.allclose(criterion("bce")(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_multilabel_soft_margin_is_torchs():
    logits, targets = torch.randn(5, 3), (torch.rand(5, 3) > 0.5).float()
    assert torch.allclose(
        criterion("multilabel_soft_margin")(logits, targets), torch.nn.MultiLabelSoftMarginLoss()(logits, targets)
    )


def test_options_come_from_the_declared_section():
    from cml.config import load_config
    from cml.strategies._base import build_criterion

    cfg = load_config(None, ["train.loss=asl", "train.asl.gamma_neg=0", "train.asl.clip=0"])
    assert section_of(LOSSES.get("asl")) == "asl"
    logits, targets = torch.randn(5, 3), (torch.rand(5, 3) > 0.5).float()
    # gamma 0 and no clip: ASL is the summed BCE
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert torch.allclose(build_criterion(cfg.train)(logits, targets), expected, rtol=1e-5)
