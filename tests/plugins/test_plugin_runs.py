"""The plugins in real runs: every combination with replay and every model, exact resume, bad options."""

import itertools
import json

import pytest
import torch
from plugin_cases import DEMO, OPTIONS, TWO_STEPS
from tests_helpers import tiny

from cml.commands.cli import main
from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import MODELS, PLUGINS
from cml.evaluation.results import reproducible
from cml.runtime import checkpoint

REPLAY = ["none", "prs", "reservoir"]
# models whose old classes' outputs depend on frozen parameters only (multilane's lanes): lwf and
# pseudo act on those outputs, so no gradient of theirs reaches a parameter that trains. Only this
# test reads the fact, so it lives here and not in the declarations' vocabulary.
FROZEN_OLD_OUTPUTS = {"multilane"}


# every registered model that trains under finetune (l3a's requires its own strategy)
FINETUNED = [m for m in MODELS.names() if MODELS.get(m).requires.get("strategy.name", "finetune") == "finetune"]


@pytest.mark.parametrize("model", FINETUNED)
@pytest.mark.parametrize(
    "replay,lwf,ewc,pseudo", list(itertools.product(REPLAY, ["none", "lwf"], ["none", "ewc"], ["none", "pseudo"]))
)
def test_every_combination_runs(run_case, model, replay, lwf, ewc, pseudo):
    plugins = tuple(p for p in (replay, lwf, ewc, pseudo) if p != "none")
    summary, state = run_case(model, plugins)
    assert len(summary["steps"]) == 2 and all(0 < s["map"] <= 100 for s in summary["steps"])
    strategy_state = state["strategy"]
    assert (strategy_state["previous_model"] is not None) == (lwf != "none" or pseudo != "none")
    ewc_state = strategy_state["plugins"].get("ewc")
    assert (ewc_state is not None) == (ewc != "none")
    if ewc_state:  # one Fisher per step over the parameters trained at its step, with their shapes then:
        first, last = (t["fisher"] for t in ewc_state["terms"])  # a head grew, or krt added a step's head
        assert len(ewc_state["terms"]) == 2
        assert all(last[n].shape == state["model"][n].shape for n in last)
        assert first.keys() != last.keys() or any(first[n].shape != last[n].shape for n in first)
    regularised = tuple(p for p in (lwf, ewc, pseudo) if p != "none")
    if regularised:  # the regularisers act from the second step on
        alone, _ = run_case(model, tuple(p for p in (replay,) if p != "none"))
        if replay == "none":
            assert summary["steps"][0]["map"] == alone["steps"][0]["map"]
        if ewc != "none" or model not in FROZEN_OLD_OUTPUTS:
            assert summary["steps"][1]["map"] != alone["steps"][1]["map"]


def applicable_model(plugin: str) -> str:
    """linear, else the first registered model the plugin's declaration accepts (tdl: krt)."""
    for model in ["linear", *MODELS.names()]:
        try:
            load_config(DEMO, TWO_STEPS + [f"model.name={model}", f"strategy.plugins=[{plugin}]"])
            return model
        except UserError:
            continue
    raise AssertionError(f"no registered model takes plugin {plugin}")


@pytest.mark.parametrize("name", PLUGINS.names())  # every registered plugin
def test_every_plugin_alone_keeps_its_declared_state(run_case, name):
    summary, state = run_case(applicable_model(name), (name,))
    assert len(summary["steps"]) == 2 and all(0 < s["map"] <= 100 for s in summary["steps"])
    assert name in state["strategy"]["plugins"]  # saved under its registered name
    keeps = state["strategy"]["previous_model"] is not None
    assert keeps == PLUGINS.get(name).uses_previous_model
    _, finetune = run_case(applicable_model(name), ())  # alone, every plugin changes step 1's training
    assert any(not torch.equal(t, finetune["model"][n]) for n, t in state["model"].items()), f"{name} acts as finetune"


# KRT's recipe on every model where it applies: herding, dynamic pseudo-labels and pod on every
# model whose backbone's stages are exposed; tdl on the models with task tokens (krt)
KRT_RECIPE = [(m, ("herding", "pod", "pseudo")) for m in MODELS.names(capabilities="backbone_stages")] + [
    (m, ("herding", "tdl", "pseudo")) for m in MODELS.names(capabilities="task_tokens")
]


@pytest.mark.parametrize("model,plugins", KRT_RECIPE)
def test_krt_recipe_on_every_model(run_case, model, plugins):
    summary, state = run_case(model, plugins, dynamic=True)
    assert len(summary["steps"]) == 2 and all(0 < s["map"] <= 100 for s in summary["steps"])
    assert summary["steps"][0]["pseudo_threshold"] is None and 0 < summary["steps"][1]["pseudo_threshold"] < 1
    assert state["strategy"]["plugins"]["pseudo"]["threshold"] == summary["steps"][1]["pseudo_threshold"]
    alone, _ = run_case(model, ("herding",))
    assert summary["steps"][0]["map"] == alone["steps"][0]["map"]  # the plugins act from the second step on
    assert summary["steps"][1]["map"] != alone["steps"][1]["map"]


def cli(tmp_path, out, overrides, *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in overrides + [f"data.root={tmp_path / 'data'}"]:
        args += ["--set", item]
    return main(args + list(extra))


KRT_R = [
    "model.name=krt",
    "strategy.plugins=[herding,tdl,pseudo]",
    "strategy.pseudo.dynamic=true",
    "strategy.pseudo.threshold=0.8",
    "strategy.replay.per_class=2",
    "strategy.replay.relabel=true",
    "strategy.replay.mix=concat",
]


CSC_R = [
    "model.name=csc",
    "model.options.embed_dim=16",
    "strategy.plugins=[herding,csc]",
    "strategy.replay.per_class=2",
    "train.loss=multilabel_soft_margin",
]  # CSC with its replay


@pytest.mark.parametrize(
    "plugins", [["strategy.plugins=[lwf,ewc,pseudo]"], KRT_R, CSC_R], ids=["lwf-ewc-pseudo", "krt-r", "csc-r"]
)
def test_resume_after_any_step_equals_the_uninterrupted_run(tmp_path, monkeypatch, capsys, plugins):
    overrides = tiny() + OPTIONS + plugins
    full = tmp_path / "full"
    assert cli(tmp_path, full, overrides) == 0
    real_save = checkpoint.save
    stops = [0, 1]  # the steps after which the run is interrupted, in turn

    def save_then_die(run_dir, step, *args):
        real_save(run_dir, step, *args)
        if stops and step == stops[0]:
            stops.pop(0)
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    killed = tmp_path / "killed"
    assert cli(tmp_path, killed, overrides) == 130  # stops after step 0
    assert cli(tmp_path, killed, overrides, "--resume") == 130  # resumes, stops after step 1
    state = torch.load(killed / "checkpoint.pt", weights_only=True)["strategy"]
    assert state["previous_model"] is not None
    if plugins == KRT_R:
        assert len(state["plugins"]["herding"]["rows"]) > 0 and 0 < state["plugins"]["pseudo"]["threshold"]
    elif plugins == CSC_R:  # the buffer, and the label graph counted over steps 0 and 1 (in the model)
        model = torch.load(killed / "checkpoint.pt", weights_only=True)["model"]
        assert len(state["plugins"]["herding"]["rows"]) > 0 and model["cooccurrence.counts"][:4].min() > 0
    else:
        assert len(state["plugins"]["ewc"]["terms"]) == 2
    assert cli(tmp_path, killed, overrides, "--resume") == 0
    results = json.loads((full / "results.json").read_text())
    assert reproducible(results) == reproducible(json.loads((killed / "results.json").read_text()))
    if plugins == KRT_R:  # the threshold was calibrated at steps 1 and 2, the second from the first
        assert [s["pseudo_threshold"] is None for s in results["steps"]] == [True, False, False]


@pytest.mark.parametrize(
    "override,key",
    [
        ("strategy.lwf.temperature=0", "strategy.lwf.temperature"),
        ("strategy.lwf.weight=-1", "strategy.lwf.weight"),
        ("strategy.lwf.tempreature=2", "strategy.lwf.tempreature"),
        ("strategy.ewc.mode=sum", "strategy.ewc.mode"),
        ("strategy.ewc.decay=1.5", "strategy.ewc.decay"),
        ("strategy.ewc.weight=lots", "strategy.ewc.weight"),
        ("strategy.pseudo.threshold=2", "strategy.pseudo.threshold"),
    ],
)
def test_bad_plugin_options_exit_2_naming_the_key(tmp_path, capsys, override, key):
    assert cli(tmp_path, tmp_path / "run", ["strategy.plugins=[lwf,ewc,pseudo]", override]) == 2
    err = capsys.readouterr().err
    assert key in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "overrides", [["strategy.plugins=[tdl]"], ["strategy.plugins=[pod]", "strategy.pod.stages=[]"]]
)
def test_a_plugin_that_does_not_apply_is_refused_with_the_config(overrides):
    """Refused by the declaration's check, in load_config: before torch is imported."""
    with pytest.raises(UserError, match="strategy.p"):
        load_config(DEMO, TWO_STEPS + overrides)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["strategy.plugins=[tdl]"], "strategy.plugins: tdl needs a model with task_tokens"),
        (
            ["strategy.plugins=[pod]", "model.backbone=test_vit"],
            "strategy.pod.stages: the backbone VisionTransformer has no stage of stride 4",
        ),
    ],
)
def test_a_plugin_that_does_not_apply_is_refused_before_training(tmp_path, capsys, overrides, message):
    assert cli(tmp_path, tmp_path / "run", tiny() + overrides) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and "epoch" not in captured.out
    assert not (tmp_path / "run" / "results.json").exists()


def test_pseudo_with_full_labels_exits_2(tmp_path, capsys):
    assert cli(tmp_path, tmp_path / "run", tiny() + ["strategy.plugins=[pseudo]", "scenario.labels=full"]) == 2
    err = capsys.readouterr().err
    assert "pseudo needs scenario.labels: partial" in err and err.count("\n") == 1
