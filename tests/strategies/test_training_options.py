"""PRS's training options: MultiLabelSoftMarginLoss, gradient clipping by value, the online mode
(one pass in a seeded random order, the last incomplete batch dropped) and all outputs from the
first step."""

import io

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from tests_helpers import tiny

from cml.config import load_config
from cml.core.registry import DATASETS
from cml.evaluation.progress import ProgressLogger
from cml.losses.bce.loss import masked_bce
from cml.models.linear.model import LinearModel
from cml.scenarios.builder import build_scenario
from cml.strategies._base import MultiLabelStrategy, build_criterion
from cml.strategies._optim import build_optimizer, build_scheduler


def test_multilabel_soft_margin_equals_torch():
    torch.manual_seed(0)
    logits = torch.randn(6, 5) * 3
    targets = (torch.rand(6, 5) < 0.4).float()
    cfg = load_config(None, ["train.loss=multilabel_soft_margin"]).train
    loss = build_criterion(cfg)(logits, targets)
    assert torch.allclose(loss, torch.nn.MultiLabelSoftMarginLoss()(logits, targets), atol=1e-6)
    # with no left-out label it is the mean BCE over all entries, what `bce` computes
    assert torch.allclose(loss, masked_bce(logits, targets), atol=1e-6)
    # wider targets (every class of the dataset) are cut to the head's outputs
    wide = torch.cat([targets, torch.ones(6, 3)], 1)
    assert torch.allclose(build_criterion(cfg)(logits, wide), loss)
    # -1 entries leave their image's mean: each image's loss over its valid classes only
    targets[0, 1] = targets[3, :4] = -1
    valid = targets >= 0
    per_image = [
        torch.nn.MultiLabelSoftMarginLoss()(logits[i, valid[i]][None], targets[i, valid[i]][None]) for i in range(6)
    ]
    assert torch.allclose(build_criterion(cfg)(logits, targets), torch.stack(per_image).mean(), atol=1e-6)


def strategy_for(cfg, plugins=(), seed=0):
    evaluator = EvaluationPlugin(loggers=[ProgressLogger(io.StringIO())])
    return MultiLabelStrategy(
        model=LinearModel("test_resnet"),
        train_cfg=cfg.train,
        eval_batch_size=32,
        device="cpu",
        plugins=list(plugins),
        evaluator=evaluator,
        seed=seed,
    )


def test_gradients_are_clipped_by_value(tmp_path):
    cfg = load_config(
        None, tiny() + ["train.optimizer=sgd", "train.lr=1", "train.momentum=0", "train.clip_grad_value=0.01"]
    )
    strategy = strategy_for(cfg)
    params = [p for p in strategy.model.parameters() if p.requires_grad]
    torch.manual_seed(1)
    for p in params:
        p.grad = torch.randn_like(p) * 0.05
    before = [p.detach().clone() for p in params]
    grads = [p.grad.clone() for p in params]
    strategy.optimizer_step()
    for p, old, g in zip(params, before, grads):
        assert torch.allclose(p.detach(), old - g.clamp(-0.01, 0.01), atol=1e-7)
    assert any((g.abs() > 0.01).any() for g in grads)  # some gradients were beyond the bound


class Batches(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.rows = []

    def before_backward(self, strategy, **kwargs):
        self.rows.append(strategy.mb_rows.tolist())


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    overrides = tiny() + [
        f"data.root={tmp_path_factory.mktemp('data')}",
        "train.online=true",
        "train.batch_size=10",
        "train.epochs=3",
        "model.outputs=all",
        "train.hflip=false",
        "data.image_size=16",
    ]
    cfg = load_config(None, overrides)
    scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))

    def train(seed):
        torch.manual_seed(seed)
        batches = Batches()
        strategy = strategy_for(cfg, [batches], seed)
        strategy.train(scenario.benchmark.train_stream[0], eval_streams=[])
        return strategy, batches.rows

    return scenario, train


def test_online_one_pass_random_order_last_batch_dropped(online):
    scenario, train = online
    strategy, rows = train(0)
    step_rows = scenario.steps[0].train_rows.tolist()
    assert len(step_rows) % 10 != 0  # so that there is an incomplete last batch to drop
    assert len(rows) == len(step_rows) // 10 and all(len(b) == 10 for b in rows)  # one pass, epochs ignored
    seen = [r for b in rows for r in b]
    assert len(set(seen)) == len(seen) and set(seen) <= set(step_rows)
    assert seen != sorted(seen)  # shuffled
    assert train(0)[1] == rows and train(1)[1] != rows  # the order follows the seed
    # the head has every class of the dataset from the first step (model.outputs: all)
    assert strategy.model.num_classes == len(scenario.class_names) == 6


def test_default_metrics_cover_the_seen_classes_with_all_outputs(online):
    """With every output from the start, the default values still score the seen classes only."""
    from cml.evaluation.metric_plugin import MultiLabelMetrics
    from cml.evaluation.metrics import multilabel_metrics

    scenario, _ = online
    metric = MultiLabelMetrics(scenario.class_names, [s.classes for s in scenario.steps], 0.5)
    scores = []

    class Scores(SupervisedPlugin):
        def after_eval_iteration(self, strategy, **kwargs):
            scores.append(torch.sigmoid(strategy.mb_output.detach()))

    strategy = MultiLabelStrategy(
        model=LinearModel("test_resnet"),
        train_cfg=load_config(None, tiny()).train,
        eval_batch_size=32,
        device="cpu",
        plugins=[Scores()],
        evaluator=EvaluationPlugin(metric, loggers=[ProgressLogger(io.StringIO())]),
    )
    strategy.model.head.grow(6)  # every output, as model.outputs: all makes it
    strategy.eval([scenario.benchmark.test_stream[0]])
    scores = torch.cat(scores)
    assert scores.shape[1] == 6
    n_seen = scenario.steps[0].n_seen
    want = multilabel_metrics(scores[:, :n_seen], torch.tensor(scenario.steps[0].test_targets[:, :n_seen]), 0.5)
    assert metric.result()["map"] == pytest.approx(want["map"]) and metric.result()["op"] == pytest.approx(want["op"])
    assert len(metric.result()["per_class_ap"]) == n_seen


def test_first_step_lr_and_no_decay_on_1d_parameters_as_krt():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.zeros(1, 3, 5, 5))
    cfg = load_config(
        None, ["train.lr=1e-4", "train.first_step_lr=4e-5", "train.weight_decay=1e-4", "train.decay_1d=false"]
    ).train
    first, later = build_optimizer(model, cfg, 0), build_optimizer(model, cfg, 1)
    assert [g["lr"] for g in first.param_groups] == [4e-5, 4e-5] and later.param_groups[0]["lr"] == 1e-4
    decayed, free = first.param_groups
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(free["params"]) == 4 and free["weight_decay"] == 0.0 and decayed["weight_decay"] == 1e-4
    # onecycle peaks at the step's own lr
    cfg.scheduler = "onecycle"
    build_scheduler(first, cfg, 10)
    assert [g["max_lr"] for g in first.param_groups] == [4e-5, 4e-5]
    default = build_optimizer(model, load_config(None, ["train.weight_decay=1e-4"]).train, 0)
    assert len(default.param_groups) == 1 and default.param_groups[0]["weight_decay"] == 1e-4
