"""The strategy's contract with models and plugins: model loss terms join the criterion, the
previous step's model is kept for plugins that ask and its outputs are computed once per batch,
and plugin state round-trips through the strategy's checkpoint state."""

import io

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin
from tests_helpers import tiny

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.evaluation.progress import ProgressLogger
from cml.models.linear.model import LinearModel
from cml.plugins._base import CmlPlugin
from cml.scenarios.builder import build_scenario
from cml.strategies._base import MultiLabelStrategy


class ModelWithExtraTerm(LinearModel):
    def loss_terms(self, outputs, targets, criterion):
        return {"extra": outputs["logits"].new_tensor(0.25)}


class Probe(CmlPlugin):
    name, uses_previous_model = "probe", True

    def __init__(self):
        super().__init__()
        self.records = []
        self.counter = 0

    def before_backward(self, strategy, **kwargs):
        base = float(strategy._criterion(strategy.mb_output, strategy.mb_y).detach())
        previous = strategy.previous_outputs()
        again = strategy.previous_outputs()
        expected = None
        if previous is not None:
            with torch.no_grad():
                expected = strategy.previous_model(strategy.mb_x)
        self.records.append(
            (
                strategy.experience.step,
                float(strategy.loss.detach()),
                base,
                previous,
                again,
                expected,
                strategy.mb_rows.clone(),
            )
        )
        self.counter += 1

    def checkpoint_state(self):
        return {"counter": self.counter}

    def load_checkpoint_state(self, state):
        self.counter = state["counter"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = load_config(None, tiny() + [f"data.root={tmp_path_factory.mktemp('data')}"])
    scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))
    torch.manual_seed(0)
    probe = Probe()
    strategy = MultiLabelStrategy(
        model=ModelWithExtraTerm("test_resnet"),
        train_cfg=cfg.train,
        eval_batch_size=32,
        device="cpu",
        plugins=[probe],
        evaluator=EvaluationPlugin(loggers=[ProgressLogger(io.StringIO())]),
    )
    for t in range(2):
        strategy.train(scenario.benchmark.train_stream[t], eval_streams=[])
    return scenario, strategy, probe


def test_model_loss_terms_are_added(trained):
    _, _, probe = trained
    for _, loss, base, *_ in probe.records:
        assert loss == pytest.approx(base + 0.25, abs=1e-5)


def test_previous_model_outputs_once_per_batch(trained):
    scenario, strategy, probe = trained
    first = [r for r in probe.records if r[0] == 0]
    second = [r for r in probe.records if r[0] == 1]
    assert first and all(r[3] is None for r in first)  # no previous model during the first step
    n_old = len(scenario.steps[0].classes)
    for _, _, _, previous, again, expected, _ in second:
        assert again is previous  # computed once for the batch
        assert previous["logits"].shape[1] == n_old
        assert torch.allclose(previous["logits"], expected)
    assert not any(p.requires_grad for p in strategy.previous_model.parameters())


def test_minibatch_rows_are_the_step_rows(trained):
    scenario, _, probe = trained
    for step, *_, rows in probe.records:
        assert set(rows.tolist()) <= set(scenario.steps[step].train_rows.tolist())


def test_checkpoint_state_round_trip(trained):
    scenario, strategy, probe = trained
    state = strategy.checkpoint_state()
    assert state["plugins"] == {"probe": {"counter": probe.counter}}  # under the registered name
    fresh_probe = Probe()
    fresh = MultiLabelStrategy(
        model=ModelWithExtraTerm("test_resnet"),
        train_cfg=strategy.train_cfg,
        eval_batch_size=32,
        device="cpu",
        plugins=[fresh_probe],
        evaluator=EvaluationPlugin(loggers=[ProgressLogger(io.StringIO())]),
    )
    fresh.model.head.grow(strategy.model.num_classes)  # as resume regrows the head before loading
    fresh.model.load_state_dict(strategy.model.state_dict())
    fresh.load_checkpoint_state(state)
    assert fresh_probe.counter == probe.counter
    for a, b in zip(strategy.previous_model.state_dict().values(), fresh.previous_model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_plain_module_is_refused_when_the_strategy_is_built():
    """Before: a TypeError about `full` a minute into training."""
    cfg = load_config(None, tiny())
    plain = torch.nn.Sequential(torch.nn.Flatten())
    with pytest.raises(UserError, match="model: a Sequential is not a cml model; expected a cml.models.Multi"):
        MultiLabelStrategy(model=plain, train_cfg=cfg.train, eval_batch_size=8, device="cpu")
