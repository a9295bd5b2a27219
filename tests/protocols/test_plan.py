"""`python -m cml plan`: the numbers a run writes (n_train, n_test, classes), without torch or
Avalanche; and a run with PRS's per-task evaluation writing its values to results.json."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import tiny

from cml.commands.cli import main
from cml.evaluation.per_task import relative

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "demo.yaml")


def with_sets(args, overrides):
    for item in overrides:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def per_task_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan")
    overrides = tiny() + [f"data.root={tmp / 'data'}", "eval.per_task=true", "eval.strict=true"]
    assert main(with_sets(["run", DEMO, "--out", str(tmp / "run")], overrides)) == 0
    return tmp, overrides, json.loads((tmp / "run" / "results.json").read_text())


def test_plan_numbers_are_the_run_numbers(per_task_run, capsys):
    tmp, overrides, results = per_task_run
    assert main(with_sets(["plan", DEMO, "--json", str(tmp / "plan.json")], overrides)) == 0
    plan = json.loads((tmp / "plan.json").read_text())
    assert [(s["classes"], s["n_train"], s["n_test"]) for s in plan["steps"]] == [
        (s["classes"], s["n_train"], s["n_test"]) for s in results["steps"]
    ]
    assert plan["class_order"] == results["class_order"]
    assert plan["class_groups"] == results["class_groups"]
    text = capsys.readouterr().out
    for s in plan["steps"]:
        assert f"step {s['step']} classes: {', '.join(s['classes'])}" in text


def test_per_task_values_in_results(per_task_run):
    _, _, results = per_task_run
    steps = results["steps"]
    for t, step in enumerate(steps):
        tasks = step["per_task"]["tasks"]
        assert [r["task"] for r in tasks] == list(range(t + 1))
        assert step["per_task"]["tally"]["n_test"] == sum(r["n_test"] for r in tasks)
        assert set(step["per_task"]["tally"]["groups"]) == {"majority", "moderate", "minority"}
    forgetting = results["relative_forgetting"]
    for entry in forgetting["per_task"]:  # each from the per-step values, as PRS defines it
        history = [r["map"] for s in steps for r in s["per_task"]["tasks"] if r["task"] == entry["task"]]
        assert entry["map"] == pytest.approx(relative(history))
    values = [e["cf1"] for e in forgetting["per_task"] if e["cf1"] is not None]
    assert forgetting["cf1"] == pytest.approx(sum(values) / len(values))
    assert len(forgetting["per_task"]) == len(steps) - 1


def test_per_task_scalars_in_tensorboard(per_task_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, _, results = per_task_run
    acc = EventAccumulator(str(tmp / "run" / "tb"))
    acc.Reload()
    logged = [e.value for e in acc.Scalars("eval_prs/tally_mAP")]
    assert logged == pytest.approx([s["per_task"]["tally"]["map"] for s in results["steps"]], abs=1e-4)


def test_plan_imports_neither_torch_nor_avalanche(per_task_run):
    tmp, overrides, _ = per_task_run
    code = (
        "import sys; from cml.commands.cli import main; "
        f"rc = main({with_sets(['plan', DEMO], overrides)!r}); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'avalanche', 'timm')); "
        "print('LOADED', loaded); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CML_CACHE": str(tmp / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout and "step 0 classes:" in proc.stdout


def test_plan_errors_exit_2(tmp_path, capsys):
    assert main(["plan", DEMO, "--set", "scenario.increment=0"]) == 2
    assert "scenario.increment" in capsys.readouterr().err
    assert math.isnan(relative([None, 5.0]))
