"""The models through the whole CLI: step-wise finetune and joint, static, and an exact resume."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from tests_helpers import interrupt_after_step, model_overrides, tiny, tiny_model

from cml.commands.cli import main
from cml.core.registry import MODELS
from cml.evaluation.results import reproducible
from cml.runtime import checkpoint

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def cli(tmp_path, out, name, overrides=(), *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in tiny() + [
        *model_overrides(name),  # its declaration's tiny variant
        f"data.root={tmp_path / 'data'}",
        *overrides,
    ]:
        args += ["--set", item]
    return main(args + list(extra))


def own_strategy(name: str) -> str | None:
    """The strategy a model requires (l3a: its own), else None."""
    return MODELS.get(name).requires.get("strategy.name")


def under(name: str, strategy: str) -> list[str]:
    """STRATEGY for model NAME; l3a's (closed form on fixed features) takes no random flips."""
    return [f"strategy.name={strategy}"] + (["train.hflip=false"] if strategy == own_strategy(name) else [])


# every registered model, under finetune and joint, or under the strategy it requires
STEPWISE = [(n, s) for n in MODELS.names() for s in ([own_strategy(n)] if own_strategy(n) else ["finetune", "joint"])]


@pytest.mark.parametrize("name,strategy", STEPWISE)
def test_stepwise_run(tmp_path, name, strategy):
    out = tmp_path / "run"
    assert cli(tmp_path, out, name, under(name, strategy)) == 0
    results = json.loads((out / "results.json").read_text())
    assert [len(s["classes"]) for s in results["steps"]] == [2, 2, 2]
    assert all(v is not None for v in results["map_matrix"][2])
    # the checkpoint is the model grown over the three steps (2 classes each), whatever its parts
    # are named: it loads, strictly, into a fresh tiny model grown the same way, and only into one
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    model = tiny_model(name).train()
    for step in range(3):
        avalanche_model_adaptation(model, SimpleNamespace(n_outputs=2 * step + 2, classes_in_this_experience=[]))
        shapes_match = {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in state.items()}
        assert shapes_match == (step == 2), step
    model.load_state_dict(state)
    assert model.num_classes == 6


@pytest.mark.parametrize("name", MODELS.names())
def test_static_run(tmp_path, name):
    out = tmp_path / "static"
    own = under(name, own_strategy(name)) if own_strategy(name) else []
    assert cli(tmp_path, out, name, ["scenario.protocol=static", *own]) == 0
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
    assert reproducible(json.loads((full / "results.json").read_text())) == reproducible(
        json.loads((killed / "results.json").read_text())
    )
