"""The models through the whole CLI: step-wise finetune and joint, static, and an exact resume."""

import json
from pathlib import Path

import pytest
import torch
from tests_helpers import interrupt_after_step, model_overrides, tiny

from cml.commands.cli import main
from cml.core.registry import MODELS
from cml.runtime import checkpoint

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
OPTIONS = {
    "dlfl": "{embed_dim: 16, heads: 2, ffn_dim: 32, discriminative: {weight: 0.1}}",
    "srn": "{attention_width: 16, regularizer_width: 8, regularizer_filters: 16}",
    "dr": "{embed_dim: 16}",
    "krt": "{embed_dim: 16, heads: 2}",
}


def cli(tmp_path, out, name, overrides=(), *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in tiny() + [
        f"model.name={name}",
        f"model.options={OPTIONS.get(name, {})}",
        *model_overrides(name),
        f"data.root={tmp_path / 'data'}",
        *overrides,
    ]:
        args += ["--set", item]
    return main(args + list(extra))


@pytest.mark.parametrize("strategy", ["finetune", "joint"])
@pytest.mark.parametrize("name", MODELS.names())  # every registered model
def test_stepwise_run(tmp_path, name, strategy):
    out = tmp_path / "run"
    assert cli(tmp_path, out, name, [f"strategy.name={strategy}"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [len(s["classes"]) for s in results["steps"]] == [2, 2, 2]
    assert all(v is not None for v in results["map_matrix"][2])
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    per_class = [
        v.shape[0] for k, v in state.items() if k.startswith(("classifier", "main.", "queries.", "head.", "base_head."))
    ]
    per_class += [v.shape[1] for k, v in state.items() if k == "regularizer_in.weight"]
    step_heads = [
        v.shape[0]
        for k, v in state.items()
        if k.startswith("tasks.heads.")
        and k.endswith(".1.bias")
        or k.startswith("lanes.lanes.")
        and k.endswith(".head.bias")
    ]  # krt, multilane
    per_class += [sum(step_heads)] if step_heads else []  # krt: one head per step, 2 classes each
    assert step_heads in ([], [2, 2, 2])
    assert per_class and set(per_class) == {6}  # grown over the three steps


@pytest.mark.parametrize("name", MODELS.names())
def test_static_run(tmp_path, name):
    out = tmp_path / "static"
    assert cli(tmp_path, out, name, ["scenario.protocol=static"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["steps"]) == 1 and len(results["steps"][0]["classes"]) == 6


def test_resume_gives_identical_results(tmp_path, monkeypatch, capsys):
    """DLFL with dropout and the discriminative loss: the regrown, reloaded model and restored RNG
    continue exactly as the uninterrupted run."""
    overrides = ["train.epochs=2"]
    full = tmp_path / "full"
    assert cli(tmp_path, full, "dlfl", overrides) == 0
    real_save = interrupt_after_step(monkeypatch, 1)
    killed = tmp_path / "killed"
    assert cli(tmp_path, killed, "dlfl", overrides) == 130
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert cli(tmp_path, killed, "dlfl", overrides, "--resume") == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((full / "results.json").read_text()) == json.loads((killed / "results.json").read_text())
