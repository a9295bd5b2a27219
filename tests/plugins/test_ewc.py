"""EWC: the quadratic penalty by hand, growing heads, separate vs online, the empirical Fisher."""

import contextlib
from types import SimpleNamespace

import pytest
import torch
from tests_helpers import with_loss_door
from torch.utils.data import TensorDataset

from cml.losses.bce.loss import masked_bce
from cml.models._base import input_stats, normalized
from cml.models._parts import GrowingLinear
from cml.plugins.ewc.plugin import ElasticWeightConsolidation, FlatTerms, empirical_fisher, ewc_penalty


def head(rows):
    layer = GrowingLinear(2, 0)
    layer.weight = torch.nn.Parameter(torch.tensor(rows, dtype=torch.float32))
    layer.bias = torch.nn.Parameter(torch.zeros(len(rows)))
    return layer


def term(weight_fisher, weight_anchor, bias_fisher, bias_anchor):
    t = torch.tensor
    return {
        "fisher": {"weight": t(weight_fisher), "bias": t(bias_fisher)},
        "anchor": {"weight": t(weight_anchor), "bias": t(bias_anchor)},
    }


def test_zero_penalty_and_gradient_at_the_anchor():
    layer = head([[1.0, 2.0], [3.0, -1.0]])
    anchor = {n: p.detach().clone() for n, p in layer.named_parameters()}
    fisher = {n: torch.rand_like(p) + 0.5 for n, p in layer.named_parameters()}
    penalty = ewc_penalty(layer, [{"fisher": fisher, "anchor": anchor}])
    penalty.backward()
    assert penalty.item() == 0.0
    assert all(float(p.grad.abs().max()) == 0.0 for p in layer.parameters())


def test_quadratic_value_away_from_the_anchor():
    layer = head([[1.0, 2.0], [3.0, -1.0]])
    t = term([[1.0, 2.0], [0.5, 0.0]], [[0.0, 2.0], [1.0, 0.0]], [4.0, 1.0], [1.0, 0.0])
    # weight: 1*(1-0)^2 + 2*0 + 0.5*(3-1)^2 + 0*... = 3; bias: 4*(0-1)^2 + 1*0 = 4
    assert ewc_penalty(layer, [t]).item() == pytest.approx(7.0)
    plugin = ElasticWeightConsolidation(weight=10.0)
    plugin.terms = [t]
    strategy = with_loss_door(SimpleNamespace(core_model=layer, loss=torch.tensor(1.0)), scale=64)
    plugin.before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(1.0 + 10.0 / 2 * 7.0)  # not per image: not scaled


def test_rows_added_after_the_fisher_are_not_penalised():
    layer = head([[1.0, 2.0], [3.0, -1.0]])
    t = term([[1.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [3.0, -1.0]], [1.0, 1.0], [0.0, 0.0])
    layer.grow(4)
    with torch.no_grad():
        layer.weight[2:] = 100.0
        layer.bias[2:] = -50.0
    penalty = ewc_penalty(layer, [t])
    penalty.backward()
    assert penalty.item() == 0.0
    assert float(layer.weight.grad[2:].abs().max()) == 0.0
    with torch.no_grad():
        layer.weight[1, 0] = 5.0  # an old entry moves: (5 - 3)^2 * 1
    assert ewc_penalty(layer, [t]).item() == pytest.approx(4.0)


def test_separate_and_online_accumulate_as_by_hand():
    f1, a1 = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([0.0, 0.0])}
    f2, a2 = {"w": torch.tensor([3.0, 1.0, 4.0])}, {"w": torch.tensor([1.0, 1.0, 1.0])}  # grew by one
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.tensor([2.0, 3.0, 5.0]))

    separate = ElasticWeightConsolidation(1.0, "separate")
    separate.add_term(f1, a1)
    separate.add_term(f2, a2)
    assert len(separate.terms) == 2
    # step 1: 1*2^2 + 2*3^2 = 22; step 2: 3*1^2 + 1*2^2 + 4*4^2 = 71
    assert ewc_penalty(model, separate.terms).item() == pytest.approx(22 + 71)

    online = ElasticWeightConsolidation(1.0, "online", decay=0.5)
    online.add_term(f1, a1)
    online.add_term(f2, a2)
    assert len(online.terms) == 1
    # F = 0.5 * [1, 2, 0] + [3, 1, 4] = [3.5, 2, 4], anchored at a2
    assert online.terms[0]["fisher"]["w"].tolist() == [3.5, 2.0, 4.0]
    assert ewc_penalty(model, online.terms).item() == pytest.approx(3.5 * 1 + 2 * 4 + 4 * 16)


def test_empirical_fisher_is_the_mean_squared_batch_gradient_of_the_masked_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 2, 3))
    x = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    y = torch.tensor([[1, 0, -1], [0, 1, -1], [1, 1, -1], [0, 0, -1], [1, 0, -1.0]])  # class 2 left out
    dataset = TensorDataset(x, y, torch.arange(5))
    stats = input_stats(model)  # ImageNet's: a plain Sequential has no pretrained_cfg
    strategy = SimpleNamespace(
        core_model=model,
        train_mb_size=2,
        device="cpu",
        autocast=contextlib.nullcontext,
        _criterion=masked_bce,
        prepare_images=lambda images: normalized(images, stats),
    )
    fisher = empirical_fisher(strategy, dataset)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in ((0, 2), (2, 4), (4, 5)):  # a plain reference loop over the same batches
        model.zero_grad()
        masked_bce(model(normalized(x[slice(*batch)], stats)), y[slice(*batch)]).backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad**2 / 3
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], atol=1e-7)
    # the left-out class never enters the loss, so its row has no importance
    assert float(fisher["1.weight"][2].abs().max()) == 0.0 and fisher["1.bias"][2].item() == 0.0
    assert float(fisher["1.weight"][:2].min()) > 0.0


def test_fused_penalty_gradient_equals_the_per_name_form_bit_for_bit():
    """The fused penalty against the plain per-name form (slice, sub, pow, mul, sum, autograd),
    on a grown head: with one term the same gradient bit for bit, with two within rounding."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), GrowingLinear(7, 3))
    terms = []
    for _ in range(2):
        fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}
        anchor = {n: p.detach() + 0.1 * torch.randn_like(p) for n, p in model.named_parameters()}
        terms.append({"fisher": fisher, "anchor": anchor})
    model[2].grow(5)
    x = torch.randn(4, 5)
    for k in (1, 2):

        def by_name():
            params, total = dict(model.named_parameters()), torch.zeros(())
            for t in terms[:k]:
                for name, fisher in t["fisher"].items():
                    part = params[name][tuple(slice(0, n) for n in fisher.shape)]
                    total = total + (fisher * (part - t["anchor"][name]).pow(2)).sum()
            return 0.35 * total

        results = []
        for penalty in (by_name, lambda: FlatTerms(model, terms[:k], 0.35).penalty()):
            model.zero_grad()
            value = penalty()
            (model(x).pow(2).mean() + value).backward()
            results.append((value.item(), [p.grad.clone() for p in model.parameters()]))
        assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
        if k == 1:
            assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
        else:  # the terms' gradients are added in another order: rounding only
            assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(results[0][1], results[1][1]))
