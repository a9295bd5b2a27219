"""Multi-label LwF: zero when the models agree, the hand-computed value and gradient otherwise."""

import math
from types import SimpleNamespace

import pytest
import torch
from tests_helpers import with_loss_door

from cml.config import load_config
from cml.core.errors import UserError
from cml.models.linear.model import LinearModel
from cml.plugins.lwf.plugin import MultiLabelLwF, distillation_loss, feature_distillation_loss
from cml.strategies._base import frozen_copy


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def bernoulli_kl(t, p):
    return t * math.log(t / p) + (1 - t) * math.log((1 - t) / (1 - p))


def fake_strategy(new_outputs, old_outputs):
    return with_loss_door(
        SimpleNamespace(
            mb_outputs=new_outputs,
            previous_outputs=lambda: old_outputs,
            loss=torch.tensor(0.5),
            core_model=torch.nn.Identity(),
        )
    )


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    model = LinearModel("test_resnet", num_classes=3).eval()
    old = frozen_copy(model)
    model.head.grow(5)  # the new step's classes: the loss must ignore them
    return model, old, torch.randn(4, 3, 32, 32)


def test_same_model_gives_zero_loss_and_zero_gradient(models):
    model, old, x = models
    loss = distillation_loss(model(x), old(x), temperature=2.0)
    loss.backward()
    assert loss.item() == 0.0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().max()) < 1e-9 for g in grads)
    model.zero_grad()


def test_changed_model_gives_positive_loss(models):
    model, old, x = models
    changed = frozen_copy(model)
    with torch.no_grad():
        changed.head.weight[:3] += 0.5
    assert distillation_loss(changed(x), old(x), temperature=2.0).item() > 1e-4
    # only old classes count: changing a new class's row changes nothing
    new_only = frozen_copy(model)
    with torch.no_grad():
        new_only.head.weight[3:] += 5.0
    assert distillation_loss(new_only(x), old(x), temperature=2.0).item() == 0.0


def test_hand_computed_value_and_gradient():
    new = torch.tensor([[0.0, 1.0, 5.0], [-2.0, 0.5, 3.0]], requires_grad=True)  # 3rd column: a new class
    old = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    T = 2.0
    terms = [
        bernoulli_kl(sigmoid(old[i, c].item() / T), sigmoid(new[i, c].item() / T)) for i in range(2) for c in range(2)
    ]
    expected = T**2 * sum(terms) / 4
    loss = distillation_loss(new, old, T)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/dz of T^2 * mean KL = T * (sigmoid(z/T) - sigmoid(q/T)) / (number of terms)
    for i in range(2):
        for c in range(2):
            hand = T * (sigmoid(new[i, c].item() / T) - sigmoid(old[i, c].item() / T)) / 4
            assert new.grad[i, c].item() == pytest.approx(hand, rel=1e-5)
        assert new.grad[i, 2].item() == 0.0


def test_feature_distillation_hand_case():
    new = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]]])  # (B=1, C=3, D=2); class 2 is new
    old = torch.tensor([[[0.0, 2.0], [1.0, -1.0]]])
    assert feature_distillation_loss(new, old).item() == pytest.approx((1 + 0 + 1 + 1) / 4)


def test_plugin_adds_weighted_losses():
    new = {"logits": torch.tensor([[0.0, 1.0]]), "label_features": torch.ones(1, 2, 3)}
    old = {"logits": torch.tensor([[1.0, 1.0]]), "label_features": torch.zeros(1, 2, 3)}
    strategy = fake_strategy(new, old)
    MultiLabelLwF(weight=3.0, temperature=1.0, feature_weight=0.5).before_backward(strategy)
    expected = 0.5 + 3.0 * bernoulli_kl(sigmoid(1.0), sigmoid(0.0)) / 2 + 0.5 * 1.0
    assert strategy.loss.item() == pytest.approx(expected, rel=1e-6)


def test_first_step_adds_nothing():
    strategy = fake_strategy({"logits": torch.zeros(2, 3), "label_features": None}, None)
    MultiLabelLwF(1.0, 2.0).before_backward(strategy)
    assert strategy.loss.item() == 0.5


def test_feature_weight_without_label_features_is_refused_with_the_config():
    lwf = ["strategy.plugins=[lwf]", "strategy.lwf.feature_weight=1"]
    with pytest.raises(UserError, match="strategy.lwf.feature_weight: the model 'linear' has no per-label features"):
        load_config(None, lwf)
    assert load_config(None, lwf + ["model.name=dlfl"]).strategy.lwf.feature_weight == 1.0
