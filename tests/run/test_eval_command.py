"""`python -m cml eval RUN_DIR`: a tiny two-step run's saved models scored again, compared with
results.json and with a plain loop over the test set; bad input refused in one line."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from run_helpers import ROOT, argv
from tests_helpers import make_model

from cml.commands.cli import main
from cml.config import load_config
from cml.datasets.imagefiles import load_data
from cml.evaluation.metrics import multilabel_metrics
from cml.models import input_stats
from cml.scenarios.builder import build_scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny 2-step finetune run that keeps every step's model."""
    tmp = tmp_path_factory.mktemp("eval")
    assert main(argv(tmp / "data", tmp / "run", ["log.save_models=every"])) == 0
    return tmp / "run"


def results(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def evaluate(run_dir, out, *extra) -> dict:
    assert main(["eval", str(run_dir), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def plain_scores(run_dir, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The saved model's sigmoid scores on step STEP's test images, one image at a time: the
    tests' tiny linear model built directly, the file's weights, (x / 255 - mean) / std."""
    state = torch.load(run_dir / f"model_step{step}.pt", weights_only=True)
    model = make_model("linear", "test_resnet", num_classes=state["num_classes"])
    model.load_state_dict(state["model"])
    model.eval()
    mean, std = input_stats(model)
    cfg = load_config(run_dir / "config.yaml")
    dataset = build_scenario(cfg, load_data(cfg.data)).benchmark.test_stream[step].dataset
    scores, targets = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            x, y = dataset[i][:2]
            scores.append(torch.sigmoid(model(((x.float() / 255 - mean) / std)[None]))[0])
            targets.append(torch.as_tensor(y)[: state["num_classes"]])
    return torch.stack(scores), torch.stack(targets)


def test_reproduces_the_runs_last_step_exactly(run, tmp_path):
    last = results(run)["steps"][-1]
    values = evaluate(run, tmp_path / "e.json")
    assert values["step"] == 1 and values["model_file"] == "model.pt"
    assert values["map"] == results(run)["last_map"]
    assert {k: values[k] for k in ("cp", "cr", "cf1", "macro_f1", "op", "or", "of1", "per_class_ap")} == {
        k: last[k] for k in ("cp", "cr", "cf1", "macro_f1", "op", "or", "of1", "per_class_ap")
    }


def test_step_0_with_every_steps_models(run, tmp_path):
    values = evaluate(run, tmp_path / "e.json", "--step", "0")
    assert values["model_file"] == "model_step0.pt" and values["map"] == results(run)["steps"][0]["map"]


def test_without_model_pt_the_checkpoint_gives_the_last_step(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("model*.pt"))
    values = evaluate(copy, tmp_path / "e.json")
    assert values["model_file"] == "checkpoint.pt" and values["map"] == results(run)["last_map"]


def test_a_model_pt_behind_the_results_gives_way_to_the_checkpoint(run, tmp_path):
    """Killed between checkpoint.pt and model.pt of the last step: the checkpoint's weights."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.copy(copy / "model_step0.pt", copy / "model.pt")
    values = evaluate(copy, tmp_path / "e.json")
    assert values["model_file"] == "checkpoint.pt" and values["map"] == results(run)["last_map"]


def test_threshold_override_gives_that_thresholds_f1(run, tmp_path):
    scores, targets = plain_scores(run, 1)
    at_08 = multilabel_metrics(scores, targets, 0.8)
    values = evaluate(run, tmp_path / "e.json", "--set", "eval.threshold=0.8")
    assert values["threshold"] == 0.8 and values["map"] == pytest.approx(at_08["map"], abs=1e-6)
    assert (values["cf1"], values["of1"]) == pytest.approx((at_08["cf1"], at_08["of1"]), abs=1e-6)
    # a threshold inside the scores (between two of them), where CF1 is not 0, strict or not
    ordered = scores.flatten().sort().values
    middle = len(ordered) // 2
    threshold = float((ordered[middle] + ordered[middle + 1]) / 2)
    want = multilabel_metrics(scores, targets, threshold)
    assert want["cf1"] > 0 and want["cf1"] != results(run)["steps"][-1]["cf1"]
    values = evaluate(run, tmp_path / "e.json", "--set", f"eval.threshold={threshold}", "--set", "eval.strict=true")
    assert values["strict"] is True
    assert (values["cf1"], values["of1"], values["cp"]) == pytest.approx((want["cf1"], want["of1"], want["cp"]))


def test_another_configs_test_set_of_the_same_classes(run, tmp_path, capsys):
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"]["root"] = str(tmp_path / "other")  # another generated test set: 40 images, the same classes
    saved["data"]["synthetic"]["test_images"] = 40
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(saved))
    values = evaluate(run, tmp_path / "e.json", "--config", str(tmp_path / "other.yaml"))
    assert values["test_config"] == str(tmp_path / "other.yaml")
    assert values["n_test"] > results(run)["steps"][1]["n_test"]
    saved["scenario"]["order"] = list(reversed(results(run)["class_order"]))
    (tmp_path / "reversed.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert main(["eval", str(run), "--config", str(tmp_path / "reversed.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are not the run's" in err


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--step", "2"], "--step 2: {run} has completed steps 0 to 1"),
        (["--step", "-1"], "--step -1: {run} has completed steps 0 to 1"),
        (["--set", "train.lr=0.1"], "--set train.lr=0.1: cml eval changes only eval.* keys"),
        (["--set", "eval.threshold=2"], "eval.threshold"),
    ],
)
def test_bad_input_one_line_exit_2(run, capsys, extra, expected):
    assert main(["eval", str(run), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected.format(run=run) in err


def test_refused_without_a_run_or_the_steps_model(run, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nothing'}: no such run directory\n"
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("model_step*.pt"))
    assert main(["eval", str(copy), "--step", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model_step0.pt" in err and "log.save_models=every" in err


def test_checks_and_data_before_torch(run):
    """The run directory, the step, the overrides, the config and the data, without torch."""
    code = (
        "import sys, types; from cml.commands import cli; from cml.commands.evaluate import prepare; "
        f"refused = cli.main(['eval', {str(run)!r}, '--step', '5']); "
        f"request, data = prepare(types.SimpleNamespace(run_dir={str(run)!r}, step=0, overrides=[], config=None)); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'avalanche', 'timm')); "
        "print('LOADED', loaded, refused, request.model_file.name, len(data.test.paths))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED [] 2 model_step0.pt 30" in proc.stdout
