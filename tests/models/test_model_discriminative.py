"""The discriminative regulariser: a supervised contrastive loss over positive label features."""

import math

import pytest
import torch
from torch.nn import functional as F

from cml.config import load_config
from cml.config.checks import model_options
from cml.core.errors import UserError
from cml.models._discriminative import discriminative_loss, supervised_contrastive


def plain_supcon(features, targets, temperature):
    """Loop-by-loop reference: anchors are (image, class) positives; positives of an anchor are
    the same class in other images; the denominator runs over every other anchor."""
    anchors = [(i, c) for i in range(targets.shape[0]) for c in range(features.shape[1]) if targets[i, c] == 1]
    z = {a: F.normalize(features[a[0], a[1]], dim=0) for a in anchors}
    losses = []
    for a in anchors:
        others = [b for b in anchors if b != a]
        positives = [b for b in others if b[1] == a[1]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[a] @ z[b]) / temperature) for b in others)
        losses.append(
            -sum(float(z[a] @ z[p]) / temperature - math.log(denominator) for p in positives) / len(positives)
        )
    return sum(losses) / len(losses)


def test_hand_computed_case():
    # image 0: class 0 -> (1, 0); image 1: class 0 -> (1, 0) and class 1 -> (0, 1); temperature 1.
    # The two class-0 anchors each have one positive (similarity 1) against a denominator
    # exp(1) + exp(0); the class-1 anchor has no positive. Loss = log(1 + 1/e).
    features = torch.tensor([[[1.0, 0.0], [5.0, 5.0]], [[2.0, 0.0], [0.0, 3.0]]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(supervised_contrastive(features, targets, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)))


def test_equals_a_plain_computation():
    torch.manual_seed(0)
    features = torch.randn(6, 4, 5)
    targets = (torch.rand(6, 7) < 0.5).float()
    targets[torch.rand(6, 7) < 0.2] = -1  # left out: never an anchor
    expected = plain_supcon(features, targets, 0.3)
    assert float(supervised_contrastive(features, targets, 0.3)) == pytest.approx(expected, rel=1e-5)


def test_one_label_images_without_pairs_give_zero_and_zero_gradients():
    features = torch.randn(3, 3, 4, requires_grad=True)
    targets = torch.eye(3)  # one label each, all different: no positive pair
    loss = supervised_contrastive(features, targets, 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(features.grad, torch.zeros_like(features))


def test_one_label_images_with_a_shared_class_are_finite():
    features = torch.randn(4, 3, 4, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    loss = supervised_contrastive(features, targets, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) > 0 and torch.isfinite(features.grad).all()
    assert features.grad[0, 0].abs().sum() > 0 and features.grad[2, 2].abs().sum() == 0  # not an anchor


def test_clustered_features_score_lower_than_shuffled():
    torch.manual_seed(1)
    centres = F.normalize(torch.randn(4, 16), dim=1)
    targets = (torch.rand(12, 4) < 0.5).float()
    targets[:, 0] = 1
    clustered = centres[None].expand(12, 4, 16) + 0.05 * torch.randn(12, 4, 16)
    flat = clustered.reshape(-1, 16)
    shuffled = flat[torch.randperm(flat.shape[0])].reshape(12, 4, 16)
    low = float(supervised_contrastive(clustered, targets, 0.1))
    high = float(supervised_contrastive(shuffled, targets, 0.1))
    assert low < high - 1.0


def loss_of(model: str, discriminative: str | None = None):
    options = [f"model.options={{discriminative: {discriminative}}}"] if discriminative else []
    return discriminative_loss(model_options(load_config(None, [f"model.name={model}"] + options)).discriminative)


def test_options():
    assert loss_of("dlfl") is None  # off by default but for dr
    loss = loss_of("dr")
    assert (loss.weight, loss.temperature) == (0.03, 0.1)
    assert loss_of("dr", "{weight: 0}") is None
    assert loss_of("dr", "null").weight == 0.03  # dr: null is its default
    loss = loss_of("srn", "{weight: 2, temperature: 0.5}")
    features, targets = torch.randn(4, 3, 5), torch.ones(4, 3)
    assert float(loss(features, targets)) == pytest.approx(2 * float(supervised_contrastive(features, targets, 0.5)))
    with pytest.raises(
        UserError, match=r"unknown key 'model.options.discriminative.margin'; valid keys: weight, temperature"
    ):
        loss_of("dlfl", "{margin: 0.2}")
    with pytest.raises(UserError, match=r"model.options.discriminative.temperature: expected a value > 0, got 0"):
        loss_of("dlfl", "{temperature: 0}")
    with pytest.raises(UserError, match=r"model.options.discriminative: expected a mapping of keys, got 0.1"):
        loss_of("dlfl", "0.1")


def test_reads_nothing_back_from_the_device():
    """No data-dependent shape or truth value: on the stand-in device (tests/device_emulation.py)
    the loss and its gradient are computed without a host read (nonzero and bool() made two per
    batch)."""
    from device_emulation import HostReads

    features = torch.randn(4, 3, 8, device="meta", requires_grad=True)
    targets = torch.ones(4, 3, device="meta")
    with HostReads() as reads:
        supervised_contrastive(features, targets, 0.1).backward()
    assert reads.reads == []
