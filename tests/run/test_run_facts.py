"""What results.json records about how a run ran (wall time, images/s, memory, parameters,
software, commit, device, host), model.pt, and that `compare` still groups by the config."""

import json
import platform
import shutil
import subprocess

import pytest
import timm
import torch
import yaml
from run_helpers import ROOT, TWO_STEPS, argv
from tests_helpers import make_model

import cml
from cml.commands.cli import main
from cml.commands.compare import find_runs, group_runs
from cml.evaluation.results import build_summary, reproducible
from cml.runtime import run_facts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny 2-step runs: finetune, linear probe (frozen backbone), L3A (closed form after step 0)."""
    tmp = tmp_path_factory.mktemp("facts")
    assert main(argv(tmp / "data", tmp / "finetune")) == 0
    assert main(argv(tmp / "data", tmp / "probe", ["strategy.name=probe", "train.hflip=false"])) == 0
    l3a = [*TWO_STEPS, "model.options.hidden=64", "strategy.l3a.base_epochs=1", f"data.root={tmp / 'data'}"]
    assert main(["run", str(ROOT / "configs" / "demo_l3a.yaml"), "--out", str(tmp / "l3a")] + sets(l3a)) == 0
    return tmp


def sets(overrides: list[str]) -> list[str]:
    return [word for item in overrides for word in ("--set", item)]


def results(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_step_facts_are_plausible(runs):
    summary = results(runs / "finetune")
    for step in summary["steps"]:
        assert 0 < step["train_s"] <= step["wall_s"] and step["images_per_s"] > 0
        # the images the batches held, once per epoch (1 epoch), over the training time
        assert step["images_per_s"] == pytest.approx(step["n_trained"] / step["train_s"], rel=0.01)
        assert step["peak_ram_mib"] > 50 and step["peak_gpu_mib"] is None  # on the CPU
    assert summary["wall_s"] == pytest.approx(sum(s["wall_s"] for s in summary["steps"]), abs=1e-3)


def test_parameter_counts(runs):
    model = make_model("linear", "test_resnet", num_classes=6)  # the run's model, grown to its 6 classes
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("backbone."))
    finetune, probe = results(runs / "finetune"), results(runs / "probe")
    assert finetune["params_total"] == probe["params_total"] == total
    assert [s["params_trained"] for s in finetune["steps"]] == [s["params_total"] for s in finetune["steps"]]
    assert finetune["steps"][0]["params_total"] < total  # 3 classes after step 0
    assert probe["steps"][-1]["params_trained"] == head < total  # only the classifier trains
    l3a = results(runs / "l3a")["steps"]
    assert l3a[0]["params_trained"] > 0 and l3a[1]["params_trained"] == 0  # step 1: closed form only
    assert l3a[1]["images_per_s"] > 0  # its one pass over the step's images


@pytest.mark.parametrize("name", ["probe", "l3a"])
def test_eval_reproduces_frozen_backbone_runs(runs, name, tmp_path):
    """`cml eval` through these strategies' own evaluation (cached features, the closed form)."""
    assert main(["eval", str(runs / name), "--json", str(tmp_path / "e.json")]) == 0
    values = json.loads((tmp_path / "e.json").read_text())
    last = results(runs / name)["steps"][-1]
    assert (values["map"], values["cf1"], values["of1"]) == (last["map"], last["cf1"], last["of1"])


def test_environment(runs):
    env = results(runs / "finetune")["environment"]
    assert env["cml"] == cml.__version__ and env["torch"] == torch.__version__ and env["timm"] == timm.__version__
    assert env["avalanche"] and env["python"] == platform.python_version()
    assert env["device"] == {"type": "cpu", "name": env["device"]["name"], "processes": 1} and env["device"]["name"]
    assert env["host"] == platform.node()
    head = subprocess.run(["git", "-C", str(run_facts.SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True)
    if (run_facts.SOURCE / ".git").exists() and head.returncode == 0:
        assert env["git"]["commit"] == head.stdout.strip() and isinstance(env["git"]["dirty"], bool)


def test_git_commit_is_none_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    monkeypatch.setattr(run_facts, "SOURCE", tmp_path)
    assert run_facts.git_commit() is None
    (tmp_path / ".git").mkdir()  # a checkout, but no git program on the PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert run_facts.git_commit() is None


def test_total_wall_time_adds_the_steps_up():
    """A resumed run's steps come from its checkpoint with their own wall times: added up."""
    step = {"map": 50.0, "step_map": [50.0], "classes": ["a"], "n_train": 1, "n_test": 1}
    steps = [{**step, "wall_s": 1.5, "params_total": 10}, {**step, "step_map": [40.0, 60.0], "wall_s": 2.25}]
    assert build_summary(steps, {})["wall_s"] == 3.75
    assert build_summary([steps[0], {**step, "step_map": [40.0, 60.0]}], {})["wall_s"] is None  # an older cml's step
    assert build_summary(steps[:1], {})["params_total"] == 10


def test_model_pt(runs):
    run_dir = runs / "finetune"
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert set(state) == {
        "format",
        "step",
        "n_steps",
        "model",
        "class_order",
        "step_classes",
        "head_sizes",
        "num_classes",
        "config",
        "cml",
    }
    summary = results(run_dir)
    assert state["step"] == 1 and state["n_steps"] == 2 and state["head_sizes"] == [3, 6] and state["num_classes"] == 6
    assert state["class_order"] == summary["class_order"]
    assert state["step_classes"] == [s["classes"] for s in summary["steps"]]
    assert state["config"] == yaml.safe_load((run_dir / "config.yaml").read_text())
    weights = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert state["model"].keys() == weights.keys() and all(torch.equal(state["model"][k], weights[k]) for k in weights)
    assert not list(run_dir.glob("model_step*.pt"))  # log.save_models: last, the default


def test_no_model_pt_with_save_models_none(tmp_path):
    assert main(argv(tmp_path / "data", tmp_path / "run", ["log.save_models=none", "scenario.base=6"])) == 0
    assert not list((tmp_path / "run").glob("model*.pt")) and (tmp_path / "run" / "checkpoint.pt").is_file()


def test_compare_groups_runs_of_other_hosts_commits_and_times(runs, tmp_path):
    """Seeds run on other machines, at another commit, taking other times: one configuration."""
    for seed in (1, 2):
        copy = tmp_path / f"seed{seed}"
        shutil.copytree(runs / "finetune", copy, ignore=shutil.ignore_patterns("*.pt", "tb"))
        config = yaml.safe_load((copy / "config.yaml").read_text())
        (copy / "config.yaml").write_text(yaml.safe_dump({**config, "seed": seed}))
        summary = results(copy)
        summary["environment"] = {**summary["environment"], "host": f"node{seed}", "git": {"commit": str(seed) * 40}}
        summary["wall_s"] *= seed
        summary["steps"][0]["wall_s"] *= seed
        (copy / "results.json").write_text(json.dumps(summary))
    groups = group_runs(find_runs([tmp_path]))
    assert len(groups) == 1 and len(groups[0].runs) == 2
    assert reproducible(results(tmp_path / "seed1")) == reproducible(results(runs / "finetune"))
