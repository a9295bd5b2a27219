"""`compare` on hand-written run directories; `--seeds` runs, their resume, TensorBoard and HParams."""

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2
from tests_helpers import tiny

from cml.commands.cli import main
from cml.evaluation.results import reproducible
from cml.runtime import checkpoint

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(
    folder: Path,
    seed: int,
    maps: list[float],
    avg_forgetting,
    cf1: float,
    of1: float,
    plugins=(),
    root="data",
    n_steps=None,
    digest="same data",
):
    folder.mkdir(parents=True)
    config = {
        "seed": seed,
        "data": {"dataset": "synthetic", "root": f"/somewhere/{root}"},
        "model": {"name": "linear", "backbone": "resnet10t"},
        "strategy": {"name": "finetune", "plugins": list(plugins), "lwf": {"weight": 1.0}},
        "train": {"lr": 0.003},
    }
    steps = [{"map": m, "cf1": cf1 - 1, "of1": of1 - 1} for m in maps]
    steps[-1].update(cf1=cf1, of1=of1)
    results = {
        "avg_map": sum(maps) / len(maps),
        "last_map": maps[-1],
        "avg_forgetting": avg_forgetting,
        "steps": steps,
        "n_steps": n_steps or len(maps),
        "data_digest": digest,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def fake_runs(tmp_path):
    parent = tmp_path / "runs"
    fake_run(parent / "ft" / "seed0", 0, [60.0, 40.0], 20.0, 30.0, 40.0, root="a")
    fake_run(parent / "ft" / "seed1", 1, [62.0, 44.0], 16.0, 34.0, 42.0, root="b")  # another data.root: same config
    fake_run(parent / "ft" / "seed2", 2, [64.0, 39.0], 24.0, 29.0, 47.0)
    fake_run(parent / "lwf" / "seed0", 0, [60.0, 50.0], 10.0, 35.0, 45.0, plugins=["lwf"])
    fake_run(parent / "lwf" / "seed1", 1, [61.0], None, 30.0, 40.0, plugins=["lwf"], n_steps=2)  # unfinished
    return parent


def test_compare_groups_seeds_with_mean_and_sample_std(fake_runs, tmp_path, capsys):
    png = tmp_path / "out" / "maps.png"
    assert main(["compare", str(fake_runs), "--out", str(png)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == (
        "| configuration | seeds | Avg mAP | Last mAP | Avg forgetting "
        "| CF1 (ML-GCN) | CF1 (per-class mean, KRT) | OF1 |"
    )
    # Avg mAP of the seeds: 50, 53, 51.5 -> mean 51.5, sample std 1.5; no macro_f1 recorded: "-"
    assert lines[2] == (
        "| finetune, linear/resnet10t | 3 | 51.50 ± 1.50 | 41.00 ± 2.65 | 20.00 ± 4.00 "
        "| 31.00 ± 2.65 | - | 43.00 ± 3.61 |"
    )
    assert lines[3] == "| finetune+lwf, linear/resnet10t | 1 | 55.00 | 50.00 | 10.00 | 35.00 | - | 45.00 |"
    assert len(lines) == 4
    assert "lwf/seed1 left out: unfinished (1 of 2 steps)" in err
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000


def test_compare_json(fake_runs, tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                str(fake_runs / "ft"),
                str(fake_runs / "lwf" / "seed0"),
                "--json",
                "--out",
                str(tmp_path / "c.png"),
            ]
        )
        == 0
    )
    groups = json.loads(capsys.readouterr().out)
    assert [g["label"] for g in groups] == ["finetune, linear/resnet10t", "finetune+lwf, linear/resnet10t"]
    ft = groups[0]
    assert ft["seeds"] == [0, 1, 2]
    assert ft["last_map"]["mean"] == pytest.approx(41.0)
    assert ft["last_map"]["std"] == pytest.approx(math.sqrt(((40 - 41) ** 2 + (44 - 41) ** 2 + (39 - 41) ** 2) / 2))
    assert [s["mean"] for s in ft["map_per_step"]] == pytest.approx([62.0, 41.0])
    assert ft["map_per_step"][0]["std"] == pytest.approx(2.0)
    assert groups[1]["avg_map"] == {"mean": 55.0, "std": None, "n": 1}


def test_compare_labels_name_the_keys_that_differ(tmp_path, capsys):
    fake_run(tmp_path / "a", 0, [50.0, 40.0], 10.0, 1.0, 1.0, plugins=["lwf"])
    fake_run(tmp_path / "b", 0, [50.0, 45.0], 5.0, 1.0, 1.0, plugins=["lwf"])
    config = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    config["strategy"]["lwf"]["weight"] = 3.0
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "| finetune+lwf, linear/resnet10t, lwf.weight=1.0 | 1 |" in out
    assert "| finetune+lwf, linear/resnet10t, lwf.weight=3.0 | 1 |" in out


def test_compare_labels_leave_out_the_options_other_models_have(tmp_path, capsys):
    """Runs of two models: each label names its own model's options, not the other's as None."""
    for name, options in (("krt", {"embed_dim": 64}), ("multilane", {"patch_size": 4})):
        fake_run(tmp_path / name, 0, [50.0, 40.0], 10.0, 1.0, 1.0)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config["model"].update(name=name, options=options)
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path / "krt"), str(tmp_path / "multilane"), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "| finetune, krt/resnet10t, model.options.embed_dim=64 | 1 |" in out
    assert "| finetune, multilane/resnet10t, model.options.patch_size=4 | 1 |" in out


def test_compare_errors_are_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "absent")]) == 2
    assert "absent: no such folder" in capsys.readouterr().err
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run directory" in err and err.count("\n") == 1


# ------------------------------------------------------------------ --seeds through the CLI

SEEDS = tiny() + [
    "data.synthetic.num_classes=4",
    "data.synthetic.train_images=40",
    "data.synthetic.test_images=24",
    "strategy.plugins=[lwf]",
]


def cli_seeds(tmp_path, out, *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in SEEDS + [f"data.root={tmp_path / 'data'}"]:
        args += ["--set", item]
    return main(args + list(extra))


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds")
    assert cli_seeds(tmp, tmp / "parent", "--seeds", "0", "1") == 0
    return tmp, tmp / "parent"


def results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_one_directory_per_seed(seed_runs):
    _, parent = seed_runs
    assert sorted(p.name for p in parent.iterdir()) == ["seed0", "seed1"]
    for seed in (0, 1):
        assert yaml.safe_load((parent / f"seed{seed}" / "config.yaml").read_text())["seed"] == seed
        assert len(results(parent / f"seed{seed}")["steps"]) == 2
    assert results(parent / "seed0")["map_matrix"] != results(parent / "seed1")["map_matrix"]


def test_tensorboard_shows_the_seeds_side_by_side_with_hparams(seed_runs):
    _, parent = seed_runs
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(parent))
    mux.Reload()
    assert sorted(mux.Runs()) == ["seed0/tb", "seed1/tb"]
    for seed in (0, 1):
        run = f"seed{seed}/tb"
        assert {"eval/mAP", "eval/CF1", "summary/avg_mAP", "summary/last_mAP"} <= set(
            mux.GetAccumulator(run).Tags()["scalars"]
        )
        acc = EventAccumulator(str(parent / run))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert {m.name.tag for m in experiment.metric_infos} >= {"summary/avg_mAP", "summary/last_mAP"}
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = start.session_start_info.hparams
        assert (
            hp["strategy"].string_value,
            hp["plugins"].string_value,
            hp["model"].string_value,
            hp["backbone"].string_value,
        ) == ("finetune", "lwf", "linear", "test_resnet")
        assert hp["seed"].number_value == seed and hp["lwf.temperature"].number_value == 2.0
        assert "ewc.weight" not in hp  # only the options of the plugins in use
        summary = results(parent / f"seed{seed}")
        assert acc.Scalars("summary/avg_mAP")[-1].value == pytest.approx(summary["avg_map"], abs=1e-4)
        assert [e.step for e in acc.Scalars("summary/last_mAP")] == [0, 1]


def test_compare_on_the_seeds(seed_runs, capsys):
    _, parent = seed_runs
    assert main(["compare", str(parent), "--json", "--out", str(parent.parent / "seeds.png")]) == 0
    [group] = json.loads(capsys.readouterr().out)
    avg = [results(parent / f"seed{s}")["avg_map"] for s in (0, 1)]
    assert group["seeds"] == [0, 1]
    assert group["avg_map"]["mean"] == pytest.approx(statistics.fmean(avg))
    assert group["avg_map"]["std"] == pytest.approx(statistics.stdev(avg))


def test_seeds_refuse_existing_runs_and_resume_the_unfinished(seed_runs, monkeypatch, capsys):
    tmp, reference = seed_runs
    assert cli_seeds(tmp, reference, "--seeds", "0", "1") == 2
    assert "already holds a run" in capsys.readouterr().err

    real_save = checkpoint.save

    def die_in_seed1(run_dir, step, *args):
        real_save(run_dir, step, *args)
        if run_dir.name == "seed1" and step == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", die_in_seed1)
    parent = tmp / "interrupted"
    assert cli_seeds(tmp, parent, "--seeds", "0", "1") == 130
    assert f"--out {parent} --seeds 0 1 --resume" in capsys.readouterr().err
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert cli_seeds(tmp, parent, "--seeds", "0", "1", "2", "--resume") == 0
    assert f"{parent / 'seed0'}: finished, nothing to resume" in capsys.readouterr().out
    for seed in (0, 1):  # seed 0 untouched, seed 1 continued: both as the uninterrupted runs
        assert reproducible(results(parent / f"seed{seed}")) == reproducible(results(reference / f"seed{seed}"))
    assert len(results(parent / "seed2")["steps"]) == 2  # never started: started


def test_a_run_older_than_a_key_groups_by_what_it_ran(tmp_path, capsys):
    """A config.yaml written before data.geometry existed ran the squash; one written before
    train.randaugment_variant with RandAugment on ran torchvision's (as_it_ran)."""
    torchvision, uda = {"randaugment": True, "randaugment_variant": "torchvision"}, {"randaugment": True}
    uda["randaugment_variant"] = "uda"
    for name, data, train in (
        ("old", {}, {"randaugment": True}),
        ("new", {"geometry": "squash", "test_resize": None}, torchvision),
        ("uda", {"geometry": "squash"}, uda),
        ("kept", {"geometry": "keep_aspect"}, torchvision),
    ):
        fake_run(tmp_path / name, 0 if name != "new" else 1, [50.0, 40.0], 10.0, 1.0, 1.0)
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        config["data"].update(data)
        config["train"].update(train)
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path), "--json", "--out", str(tmp_path / "c.png")]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert sorted(len(g["seeds"]) for g in groups) == [1, 1, 2]  # old + new together; uda and kept apart
    (together,) = [g for g in groups if len(g["seeds"]) == 2]
    assert sorted(together["seeds"]) == [0, 1]
