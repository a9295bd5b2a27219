"""PRS's recipe differences: one optimizer for the whole stream (its state carried from step to step
and through a resume) and classifier rows initialised as a default nn.Linear."""

import json
import math
from pathlib import Path

import torch
from tests_helpers import interrupt_after_step, make_model, tiny
from torch import nn

from cml.commands.cli import main
from cml.evaluation.results import reproducible
from cml.models._parts import GrowingLinear
from cml.strategies._batches import StepBatches

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def test_default_head_init_is_nn_linear():
    torch.manual_seed(3)
    grown = GrowingLinear(4, 3, prior=None)
    torch.manual_seed(3)
    plain = nn.Linear(4, 3)
    assert torch.equal(grown.weight, plain.weight) and torch.equal(grown.bias, plain.bias)
    prior = GrowingLinear(4, 3)
    assert torch.allclose(prior.bias, torch.full((3,), math.log(0.05 / 0.95)))
    model = make_model("linear", "test_resnet", num_classes=2, head_init="default")
    assert model.head.prior is None
    model.reset_classifier(5)
    assert model.head.prior is None and model.head.num_classes == 5


def run(tmp_path, out, *extra, overrides=()):
    args = ["run", DEMO, "--out", str(out)]
    for item in tiny() + [
        "model.outputs=all",
        "train.optimizer_scope=stream",
        "model.options={head_init: default}",
        f"data.root={tmp_path / 'data'}",
        *overrides,
    ]:
        args += ["--set", item]
    return main(args + list(extra))


def test_one_optimizer_for_the_stream_continues_through_a_resume(tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert run(tmp_path, full) == 0
    state = torch.load(full / "checkpoint.pt", weights_only=True)
    adam_steps = {float(s["step"]) for s in state["strategy"]["stream_optimizer"]["state"].values()}
    steps = json.loads((full / "results.json").read_text())["steps"]
    batches = sum(len(StepBatches(s["n_train"], 16, (0, t), drop_incomplete=False)) for t, s in enumerate(steps))
    assert adam_steps == {float(batches)}  # every step's updates counted by one Adam state
    real_save = interrupt_after_step(monkeypatch, 0)
    killed = tmp_path / "killed"
    assert run(tmp_path, killed) == 130
    monkeypatch.setattr("cml.runtime.checkpoint.save", real_save)
    assert run(tmp_path, killed, "--resume") == 0
    assert reproducible(json.loads((full / "results.json").read_text())) == reproducible(
        json.loads((killed / "results.json").read_text())
    )
