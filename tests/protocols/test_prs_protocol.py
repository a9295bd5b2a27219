"""The PRS protocol on a COCO-layout fixture whose image ids are those of PRS-style id lists: the
per-task counts `cml plan` prints, COCOseq labels with crowd annotations, and bad split files."""

import json
from pathlib import Path

import numpy as np
import pytest
from coco_fixture import COCO_CATEGORIES, write_coco

from cml.commands.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "cocoseq_prs.yaml")
CAT = {name: cid for cid, name in COCO_CATEGORIES}
TASKS = [["bus", "cat", "dog"], ["apple", "pizza"], ["kite", "skis", "tie"], ["book", "vase"]]
ORDER = [0, 3, 1, 2]  # cocoseq_prs.yaml's task order


def build(tmp_path: Path):
    """COCO 2014 layout + PRS split files. Task k's images hold only task k's classes (as in
    COCOseq), some annotations are crowd; PRS lists train images from val2014 too."""
    rng = np.random.default_rng(11)
    splits = {"train2014": {}, "val2014": {}}
    lists = {"train": [], "test": []}
    image_id = 100_000
    for k, block in enumerate(TASKS):
        for part, count in (("train", 12 + 3 * k), ("test", 5 + k)):
            ids = []
            for i in range(count):
                image_id += int(rng.integers(1, 50))
                # PRS draws on both COCO splits: every 4th training image comes from val2014
                folder = "val2014" if (part == "test") != (i % 4 == 3) else "train2014"
                names = rng.choice(block, size=int(rng.integers(1, len(block) + 1)), replace=False)
                splits[folder][image_id] = [(CAT[n], int(rng.random() < 0.3)) for n in names]
                ids.append(image_id)
            lists[part].append(ids)
    lists["train"][2].append(7)  # an id that is no image of the dataset
    root = write_coco(tmp_path / "coco", splits, COCO_CATEGORIES)
    split_dir = tmp_path / "split" / "ids"
    split_dir.mkdir(parents=True)
    map_names = sorted(n for block in TASKS for n in block)
    (split_dir.parent / "multihot_map.json").write_text(json.dumps({n: i for i, n in enumerate(map_names)}))
    for part, per_task in lists.items():
        for k, ids in enumerate(per_task):
            (split_dir / f"{part}_task{k}_id_coco.json").write_text(json.dumps(ids))
    groups = {"majority": map_names[:3], "moderate": map_names[3:7], "minority": map_names[7:]}
    overrides = [f"data.root={root}", f"scenario.split_dir={split_dir.parent}"]
    for group, prs_file in (("majority", "major"), ("moderate", "moderate"), ("minority", "minor")):
        path = split_dir.parent / f"{prs_file}_cats.json"
        path.write_text(json.dumps(groups[group]))
        overrides.append(f"eval.groups.{group}={path}")
    annotations = {**splits["train2014"], **splits["val2014"]}
    return overrides, lists, annotations, groups, split_dir.parent


def plan(tmp_path, overrides, capsys):
    out = tmp_path / "plan.json"
    args = ["plan", CONFIG, "--json", str(out)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_plan_prints_the_per_task_counts_of_the_id_lists(tmp_path, capsys):
    overrides, lists, annotations, groups, _ = build(tmp_path)
    info, text = plan(tmp_path, overrides, capsys)
    found = {part: [[i for i in ids if i in annotations] for ids in per_task] for part, per_task in lists.items()}
    seen = []
    for t, task in enumerate(ORDER):
        step = info["steps"][t]
        seen.append(task)
        assert step["task"] == task and step["classes"] == sorted(TASKS[task])
        assert step["n_train"] == len(found["train"][task])
        assert step["n_test"] == sum(len(found["test"][k]) for k in seen)
        assert step["test_per_task"] == [{"task": k, "n_test": len(found["test"][k])} for k in seen]
        printed = ", ".join(f"task {k}: {len(found['test'][k])}" for k in seen)
        assert f"test images per task: {printed}" in text
    assert info["skipped"] == {"split_train_ids_not_found": 1}
    assert {g: sorted(names) for g, names in info["class_groups"].items()} == groups


def test_cocoseq_labels_include_crowd(tmp_path, capsys):
    """PRS's dataset maker turns every annotation of the map's classes into a label, crowd too."""
    overrides, lists, annotations, _, _ = build(tmp_path)
    for mode, counted in (("positive", {0, 1}), ("ignore", {0})):
        info, _ = plan(tmp_path, overrides + [f"data.coco.crowd={mode}"], capsys)
        for t, task in enumerate(ORDER):
            counts = [
                sum(
                    any(c == CAT[name] and crowd in counted for c, crowd in annotations[i])
                    for i in lists["train"][task]
                    if i in annotations
                )
                for name in sorted(TASKS[task])
            ]
            p = info["steps"][t]["train_positives_per_class"]
            assert (p["min"], p["median"], p["max"]) == (min(counts), float(np.median(counts)), max(counts))
            no_label = sum(
                not any(crowd in counted for _, crowd in annotations[i])
                for i in lists["train"][task]
                if i in annotations
            )
            assert info["steps"][t]["train_without_positive"] == no_label
        if mode == "positive":
            assert all(s["train_without_positive"] == 0 for s in info["steps"])
        else:  # crowd-only images lose their labels when crowd annotations are ignored
            assert sum(s["train_without_positive"] for s in info["steps"]) > 0


@pytest.mark.parametrize(
    "file, content, message",
    [
        (
            "ids/train_task2_id_coco.json",
            [100001, {"id": 3}],
            r'train_task2_id_coco.json: entry 1: {"id": 3} is not an image id',
        ),
        ("ids/test_task0_id_coco.json", {"ids": [1]}, r"test_task0_id_coco.json: expected a JSON list of image ids"),
        (
            "multihot_map.json",
            {"apple": 0, "book": 1, "bus": 3},
            r"multihot_map.json: entry 'bus': index 3 is out of range",
        ),
        (
            "multihot_map.json",
            {"apple": 0, "book": 0},
            r"multihot_map.json: entry 'book': index 0 is also that of 'apple'",
        ),
        ("multihot_map.json", {"apple": "0"}, r"multihot_map.json: entry 'apple': index '0' is not an integer"),
        (
            "minor_cats.json",
            ["vase", "tie", "pizzza"],
            r"minor_cats.json: entry 2: 'pizzza' is not a class of the dataset; "
            r"did you mean 'pizza'\?",
        ),
        ("moderate_cats.json", ["apple"], r"moderate_cats.json: entry 0: 'apple' is already in the majority list"),
    ],
)
def test_bad_split_files_exit_2_with_one_line(tmp_path, capsys, file, content, message):
    overrides, _, _, _, split_dir = build(tmp_path)
    (split_dir / file).write_text(json.dumps(content))
    args = ["plan", CONFIG]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(split_dir / file) in err
    import re

    assert re.search(message, err), err


def test_cocoseq_config_runs_with_prs_evaluation(tmp_path, capsys):
    overrides, lists, annotations, groups, _ = build(tmp_path)
    out = tmp_path / "run"
    args = ["run", CONFIG, "--out", str(out)]
    for item in overrides + ["model.backbone=test_resnet", "model.pretrained=false", "data.image_size=16"]:
        args += ["--set", item]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    found = {part: [[i for i in ids if i in annotations] for ids in per_task] for part, per_task in lists.items()}
    for t, step in enumerate(results["steps"]):
        assert step["n_train"] == len(found["train"][ORDER[t]])
        assert [(r["task"], r["n_test"]) for r in step["per_task"]["tasks"]] == [
            (k, len(found["test"][k])) for k in ORDER[: t + 1]
        ]
        # each task's test set is scored on the classes present in it: its own (COCOseq-style data)
        assert [r["n_classes"] for r in step["per_task"]["tasks"]] == [len(TASKS[k]) for k in ORDER[: t + 1]]
    assert {g: sorted(names) for g, names in results["class_groups"].items()} == groups
    assert [e["task"] for e in results["relative_forgetting"]["per_task"]] == ORDER[:3]
    assert results["skipped"] == {"split_train_ids_not_found": 1}
