"""Short end-to-end runs of the CLI on the generated dataset: outputs, joint, resume."""

import csv
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests_helpers import interrupt_after_step, tiny

from cml.commands.cli import main
from cml.config import load_config
from cml.core.registry import DATASETS
from cml.evaluation.results import reproducible
from cml.protocols.split import class_order, joint_rows_and_targets, reorder
from cml.runtime import checkpoint

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def cli(tmp_path, out, overrides, *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in overrides + [f"data.root={tmp_path / 'data'}"]:
        args += ["--set", item]
    return main(args + list(extra))


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    out = tmp / "run"
    assert cli(tmp, out, tiny()) == 0
    return tmp, out


def test_outputs(finetune_run, capsys):
    tmp, out = finetune_run
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"map_matrix", "avg_map", "last_map", "avg_forgetting", "steps", "skipped"}
    steps = results["steps"]
    assert len(steps) == 3 and [len(s["classes"]) for s in steps] == [2, 2, 2]
    for s in steps:
        assert set(s) >= {
            "classes",
            "n_train",
            "n_test",
            "map",
            "cp",
            "cr",
            "cf1",
            "op",
            "or",
            "of1",
            "per_class_ap",
            "macro_f1",
        }
    # alphabetical class order over the 6 generated classes
    names = [c for s in steps for c in s["classes"]]
    assert names == sorted(names)
    assert set(steps[0]["per_class_ap"]) == set(steps[0]["classes"])
    assert set(steps[2]["per_class_ap"]) == set(names)
    # matrix diagonal-and-below filled, Avg/Last consistent with the per-step values
    matrix = results["map_matrix"]
    assert matrix[0][1] is None and all(v is not None for v in matrix[2])
    assert results["avg_map"] == pytest.approx(sum(s["map"] for s in steps) / 3)
    assert results["last_map"] == steps[-1]["map"]
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["map"]) for r in rows] == pytest.approx([s["map"] for s in steps], abs=1e-4)
    assert (out / "config.yaml").is_file() and (out / "checkpoint.pt").is_file()
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "eval/mAP" in scalars and "eval/CF1" in scalars and "eval_step_mAP/step0" in scalars
    logged = [(e.step, e.value) for e in acc.Scalars("eval/mAP")]
    assert [s for s, _ in logged] == [0, 1, 2]
    assert [v for _, v in logged] == pytest.approx([s["map"] for s in steps], abs=1e-4)


def test_counts_match_scenario_rules(finetune_run):
    tmp, out = finetune_run
    cfg = load_config(DEMO, tiny() + [f"data.root={tmp / 'data'}"])
    data = DATASETS.get("synthetic").build(cfg.data)
    data = reorder(data, class_order(data.class_names, "alphabetical", 0))
    steps = json.loads((out / "results.json").read_text())["steps"]
    y_train, y_test = data.train.labels, data.test.labels
    for t, s in enumerate(steps):
        block = slice(2 * t, 2 * t + 2)
        assert s["n_train"] == int(y_train[:, block].any(1).sum())
        assert s["n_test"] == int(y_test[:, : 2 * t + 2].any(1).sum())


def test_existing_run_is_not_overwritten(finetune_run, capsys):
    tmp, out = finetune_run
    assert cli(tmp, out, tiny()) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_joint_trains_on_the_union(tmp_path):
    out = tmp_path / "joint"
    assert cli(tmp_path, out, tiny() + ["strategy.name=joint"]) == 0
    steps = json.loads((out / "results.json").read_text())["steps"]
    cfg = load_config(DEMO, tiny() + [f"data.root={tmp_path / 'data'}"])
    data = DATASETS.get("synthetic").build(cfg.data)
    data = reorder(data, class_order(data.class_names, "alphabetical", 0))
    assert [s["n_train"] for s in steps] == [len(joint_rows_and_targets(data.train.labels, n)[0]) for n in (2, 4, 6)]


def test_resume_gives_identical_results(tmp_path, monkeypatch, capsys):
    overrides = tiny() + ["train.epochs=2"]
    full = tmp_path / "full"
    assert cli(tmp_path, full, overrides) == 0

    real_save = interrupt_after_step(monkeypatch, 1)
    killed = tmp_path / "killed"
    assert cli(tmp_path, killed, overrides) == 130
    assert "--resume" in capsys.readouterr().err
    # killed between the checkpoint write and the results write: the checkpoint holds step 1, the
    # results one step less; --resume rewrites them from the checkpoint
    assert checkpoint.load(killed, 3)["step"] == 1
    assert len(json.loads((killed / "results.json").read_text())["steps"]) == 1
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert cli(tmp_path, killed, overrides, "--resume") == 0
    a = reproducible(json.loads((full / "results.json").read_text()))  # times and memory differ
    b = reproducible(json.loads((killed / "results.json").read_text()))
    assert a == b


def test_resume_refuses_a_changed_config(finetune_run, capsys):
    tmp, out = finetune_run
    assert cli(tmp, out, tiny() + ["train.lr=0.5"], "--resume") == 2
    err = capsys.readouterr().err
    assert "config differs" in err and "train.lr (0.01 in the run, 0.5 now)" in err


def test_static_is_one_step(tmp_path):
    out = tmp_path / "static"
    assert cli(tmp_path, out, tiny() + ["scenario.protocol=static"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["steps"]) == 1 and len(results["steps"][0]["classes"]) == 6
    assert results["avg_forgetting"] is None


def test_corrupt_image_is_one_clear_error(tmp_path, capsys):
    from cml.datasets.synthetic import dataset_folder

    cfg = load_config(DEMO, tiny() + [f"data.root={tmp_path / 'data'}"])
    DATASETS.get("synthetic").build(cfg.data)
    victim = sorted((dataset_folder(cfg.data) / "train").glob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    assert cli(tmp_path, tmp_path / "run", tiny() + ["data.bad_images=stop"]) == 2
    err = capsys.readouterr().err
    assert f"{victim} (not an image" in err and err.count("\n") == 1
