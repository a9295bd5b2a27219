"""CSC: the co-occurrence statistics of each step's partial labels and their normalised graph
against a hand computation; the graph grows keeping the learnt block and seeds the new classes;
the plugin's loss against a plain formula; real runs (exact resume, the protocol configs)."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from protocols.test_protocols import coco_root, voc_root  # noqa: F401
from tests_helpers import interrupt_after_step, run_cli, run_full_and_resumed, tiny, with_loss_door
from torch.nn import functional as F

from cml.models._label_graph import GrowingAdjacency, LabelCooccurrence, normalised_cooccurrence
from cml.plugins.csc.plugin import ConfidenceSelfCalibration, max_entropy_term

REPO = Path(__file__).resolve().parents[2]


def test_statistics_of_each_step_and_normalisation_by_hand():
    stats = LabelCooccurrence(2)
    stats.add(torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]))  # step 0: classes 0, 1
    stats.grow(4)
    stats.add(torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, -1]]))  # step 1: classes 2, 3
    assert stats.counts.tolist() == [2, 2, 2, 1]
    assert stats.joint.tolist() == [[2, 1, 0, 0], [1, 2, 0, 0], [0, 0, 2, 1], [0, 0, 1, 1]]
    # P: p01 = 1/2, p10 = 1/2, p23 = 1/2, p32 = 1/1; P + I row sums: 1.5, 1.5, 1.5, 2
    a = [[1, 0.5, 0, 0], [0.5, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 1, 1]]
    d = [1.5, 1.5, 1.5, 2.0]
    expected = [[a[i][j] / math.sqrt(d[i] * d[j]) for j in range(4)] for i in range(4)]
    assert torch.allclose(stats.graph(), torch.tensor(expected), atol=1e-6)
    assert normalised_cooccurrence(torch.zeros(2), torch.zeros(2, 2)).tolist() == [[1, 0], [0, 1]]


def test_graph_grows_keeping_the_learnt_block_and_seeds_new_classes():
    graph = GrowingAdjacency(2)
    with torch.no_grad():
        graph.weight.copy_(torch.tensor([[3.0, 4], [5, 6]]))
    graph.grow(4)
    prior = torch.arange(16.0).reshape(4, 4)
    graph.seed_new(prior, first_new=2)
    assert graph.weight.tolist() == [[3, 4, 2, 3], [5, 6, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]


def test_plugin_loss_by_formula():
    steps = [SimpleNamespace(classes=[0, 1]), SimpleNamespace(classes=[2])]
    plugin = ConfidenceSelfCalibration(steps, alpha=0.3, entropy_weight=0.04)
    logits, old = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[2.0, 0.0]])
    targets = torch.tensor([[0.0, 1.0, 1.0]])
    strategy = SimpleNamespace(
        experience=SimpleNamespace(step=1),
        mb_y=targets,
        mbatch=[None, targets, None],
        mb_outputs={"logits": logits},
        previous_outputs=lambda: {"logits": old},
        loss=torch.tensor(2.0),
    )
    with_loss_door(strategy, scale=5)  # per-image terms: on a summed criterion's scale too
    plugin.after_forward(strategy)
    assert strategy.mbatch[1].tolist() == [[-1, -1, 1]] and targets.tolist() == [[0, 1, 1]]
    plugin.before_backward(strategy)
    p_old = torch.sigmoid(old)
    kd = -(p_old * F.logsigmoid(logits[:, :2]) + (1 - p_old) * F.logsigmoid(-logits[:, :2])).mean()
    p = torch.sigmoid(logits)
    entropy = (p * torch.log(p + 1e-5)).sum()
    assert strategy.loss.item() == pytest.approx(2.0 + 5 * (0.7 * kd.item() + 0.04 * entropy.item()), rel=1e-6)
    assert max_entropy_term(torch.tensor([[math.log(1 / (math.e - 1))]])) < max_entropy_term(torch.tensor([[5.0]]))


TINY_CSC = tiny() + ["model.name=csc", "model.options.embed_dim=16", "strategy.plugins=[csc]"]


def test_csc_resumes_exactly_and_counts_every_step(tmp_path, monkeypatch):
    overrides = TINY_CSC + [f"data.root={tmp_path / 'data'}"]
    demo = REPO / "configs" / "demo.yaml"
    full, resumed = run_full_and_resumed(demo, tmp_path, monkeypatch, overrides)
    assert full == resumed and len(full["steps"]) == 3
    state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    joint = state["cooccurrence.joint"]
    assert joint.shape == (6, 6) and joint[:2, 2:].abs().sum() == 0  # no pair across steps
    assert torch.equal(state["cooccurrence.counts"], joint.diagonal()) and state["cooccurrence.counts"].min() > 0


@pytest.mark.parametrize("config", ["coco_b0_c10_csc.yaml", "voc_b0_c4_csc.yaml"])
def test_protocol_configs_run_a_step(tmp_path, monkeypatch, coco_root, voc_root, config):  # noqa: F811
    root = coco_root if config.startswith("coco") else voc_root
    overrides = [
        f"data.root={root}",
        "data.image_size=32",
        "data.num_workers=0",
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "model.options.embed_dim=16",
        "train.epochs=1",
        "train.batch_size=32",
        "train.amp=none",
        "eval.batch_size=64",
    ]
    interrupt_after_step(monkeypatch, 0)
    assert run_cli(REPO / "configs" / config, tmp_path / "run", overrides) == 130
    steps = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["steps"]
    assert len(steps) == 1 and 0 < steps[0]["map"] <= 100
