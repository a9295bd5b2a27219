"""PRS split files (split-files protocol) against expectations worked out by hand on a small COCO."""

import json

import numpy as np
import pytest
from coco_fixture import write_coco

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.protocols.split_file_reader import split_file_steps

# dataset columns follow ascending category id: bird cat dog fish horse zebra
CATS = [(9, "dog"), (2, "bird"), (17, "horse"), (5, "cat"), (20, "zebra"), (11, "fish")]
BIRD, CAT, DOG, FISH, HORSE, ZEBRA = 2, 5, 9, 11, 17, 20
TRAIN = {
    101: [BIRD],
    102: [BIRD, CAT],
    103: [CAT],
    104: [DOG],
    105: [DOG, ZEBRA],
    106: [FISH],
    107: [FISH, HORSE],
    108: [HORSE],
    109: [BIRD],
    110: [CAT, DOG],
    111: [],
    112: [HORSE],
}
TEST = {201: [BIRD], 202: [CAT], 203: [DOG], 204: [DOG, CAT], 205: [HORSE], 206: [FISH, ZEBRA], 207: [FISH], 208: [CAT]}
# zebra is not in the map; map order: dog cat bird horse fish
MAP = {"dog": 0, "cat": 1, "bird": 2, "horse": 3, "fish": 4}
# 112 is missing on disk, 999 is no image; 207 is a val2014 image listed for training; "103" a string id
TASKS = {
    "train": [[101, 102, "103"], [104, 105, 110], [106, 107, 108, 112, 207]],
    "test": [[201, 202], [203, 204, 999], [205, 206]],
}


@pytest.fixture
def coco(tmp_path):
    splits = {
        "train2014": {i: [(c, 0) for c in cats] for i, cats in TRAIN.items()},
        "val2014": {i: [(c, 0) for c in cats] for i, cats in TEST.items()},
    }
    return write_coco(tmp_path / "coco", splits, CATS, missing=("COCO_train2014_000000000112.jpg",))


@pytest.fixture
def split_dir(tmp_path):
    folder = tmp_path / "prs"
    folder.mkdir()
    (folder / "multihot_map.json").write_text(json.dumps(MAP))
    for part, tasks in TASKS.items():
        for k, ids in enumerate(tasks):
            (folder / f"{part}_task{k}_id_coco.json").write_text(json.dumps(ids))
    return folder


def load(coco):
    return DATASETS.get("coco").build(load_config(None, ["data.dataset=coco", f"data.root={coco}"]).data)


def step_train_ids(data, step):
    return [data.train.ids[r] for r in step.train_rows]


def step_test_ids(data, step):
    return [data.test.ids[r] for r in step.test_rows]


def test_classes_images_and_partial_labels(coco, split_dir):
    data, steps = split_file_steps(load(coco), str(split_dir), [], "partial")
    # task 0 holds bird and cat (cat first by map index); task 1 dog (cat is taken, zebra unmapped)
    assert data.class_names == ["cat", "bird", "dog", "horse", "fish"]
    assert [s.classes for s in steps] == [[0, 1], [2], [3, 4]] and [s.n_seen for s in steps] == [2, 3, 5]
    # the listed images only: 109 and 111 are in no file, 207 (val2014) is a training image
    assert data.train.ids == [101, 102, 103, 104, 105, 106, 107, 108, 110, 207]
    assert data.test.ids == [201, 202, 203, 204, 205, 206]
    assert [step_train_ids(data, s) for s in steps] == [[101, 102, 103], [104, 105, 110], [106, 107, 108, 207]]
    assert steps[0].train_targets.tolist() == [[0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert steps[1].train_targets.tolist() == [[0, 0, 1, 0, 0]] * 3  # 110's cat is dropped
    assert steps[2].train_targets[1].tolist() == [0, 0, 0, 1, 1]  # 107: horse fish
    assert [step_test_ids(data, s) for s in steps] == [[201, 202], [201, 202, 203, 204], list(range(201, 207))]
    assert steps[0].test_targets.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert steps[1].test_targets[3].tolist() == [1, 0, 1, 0, 0]  # 204: dog cat
    assert steps[2].test_targets[5].tolist() == [0, 0, 0, 0, 1]  # 206: fish (zebra unmapped)
    assert all(s.train_targets.dtype == s.test_targets.dtype == np.float32 for s in steps)
    assert data.skipped == {"train_missing_files": 1, "split_train_ids_not_found": 1, "split_test_ids_not_found": 1}


def test_full_labels(coco, split_dir):
    data, steps = split_file_steps(load(coco), str(split_dir), [], "full")
    assert steps[1].train_targets[2].tolist() == [1, 0, 1, 0, 0]  # 110: cat dog
    assert steps[2].train_targets.tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 1, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]


def test_task_order(coco, split_dir):
    data, steps = split_file_steps(load(coco), str(split_dir), [2, 0, 1], "partial")
    assert data.class_names == ["horse", "fish", "cat", "bird", "dog"]
    assert [step_train_ids(data, s) for s in steps] == [[106, 107, 108, 207], [101, 102, 103], [104, 105, 110]]
    assert [step_test_ids(data, s) for s in steps] == [[205, 206], [201, 202, 205, 206], list(range(201, 207))]
    assert steps[1].test_targets[1].tolist() == [0, 0, 1, 0, 0]  # 202: cat; dog not yet seen
    # run first, task 1 claims cat (110) and leaves task 0 only bird
    data, steps = split_file_steps(load(coco), str(split_dir), [1, 0, 2], "partial")
    assert data.class_names == ["dog", "cat", "bird", "horse", "fish"]
    assert steps[1].train_targets.tolist() == [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]


def test_files_in_an_ids_folder(coco, split_dir):
    (split_dir / "ids").mkdir()
    for path in split_dir.glob("*_task*.json"):
        path.rename(split_dir / "ids" / path.name)
    assert len(split_file_steps(load(coco), str(split_dir), [], "partial")[1]) == 3


def test_errors(coco, split_dir):
    data = load(coco)
    (split_dir / "multihot_map.json").write_text(json.dumps({**MAP, "hors": 5}))
    with pytest.raises(UserError, match=r"multihot_map.json: class 'hors' is not .*did you mean 'horse'\?"):
        split_file_steps(data, str(split_dir), [], "partial")
    (split_dir / "multihot_map.json").write_text(json.dumps(MAP))
    for order in ([0, 1], [0, 1, 1], [0, 1, 3]):
        with pytest.raises(UserError, match=r"scenario.task_order: .* tasks 0..2"):
            split_file_steps(data, str(split_dir), order, "partial")
    (split_dir / "test_task1_id_coco.json").write_text("[203,\n 204,,]")
    with pytest.raises(UserError, match=r"test_task1_id_coco.json: line 2: not valid JSON"):
        split_file_steps(data, str(split_dir), [], "partial")
    (split_dir / "test_task1_id_coco.json").write_text(json.dumps({"ids": [203]}))
    with pytest.raises(UserError, match=r"test_task1_id_coco.json: expected a JSON list of image ids"):
        split_file_steps(data, str(split_dir), [], "partial")
    (split_dir / "test_task1_id_coco.json").write_text(json.dumps([998, 999]))
    with pytest.raises(UserError, match=r"test_task1_id_coco.json: none of its 2 ids is an image"):
        split_file_steps(data, str(split_dir), [], "partial")
    (split_dir / "test_task1_id_coco.json").unlink()
    with pytest.raises(UserError, match=r"test_task1_id_coco.json: not found"):
        split_file_steps(data, str(split_dir), [], "partial")


def test_task_without_a_new_class(coco, split_dir):
    (split_dir / "train_task1_id_coco.json").write_text(json.dumps([103]))  # cat, already task 0's
    with pytest.raises(UserError, match=r"train_task1_id_coco.json: its images hold no class"):
        split_file_steps(load(coco), str(split_dir), [], "partial")


def test_avalanche_benchmark(coco, split_dir):
    from cml.scenarios.builder import build_scenario

    cfg = load_config(
        None,
        [
            "data.dataset=coco",
            f"data.root={coco}",
            "scenario.protocol=split-files",
            f"scenario.split_dir={split_dir}",
            "data.image_size=8",
        ],
    )
    bench = build_scenario(cfg, load(coco)).benchmark
    assert len(bench.train_stream) == len(bench.test_stream) == 3
    assert [e.classes_in_this_experience for e in bench.train_stream] == [[0, 1], [2], [3, 4]]
    assert [e.classes_in_this_experience for e in bench.test_stream] == [[0, 1], [0, 1, 2], [0, 1, 2, 3, 4]]
    assert [len(e.dataset) for e in bench.train_stream] == [3, 3, 4]
    assert [len(e.dataset) for e in bench.test_stream] == [2, 4, 6]


def test_test_images_of_each_task(coco, split_dir):
    data, steps = split_file_steps(load(coco), str(split_dir), [2, 0, 1], "partial")
    assert [s.task for s in steps] == [2, 0, 1]
    # after the last step the test rows are 201..206; task 2 lists 205 206, task 0 201 202, task 1 203 204
    ids = [data.test.ids[r] for r in steps[2].test_rows]
    assert [(task, [ids[i] for i in at]) for task, at in steps[2].test_tasks] == [
        (2, [205, 206]),
        (0, [201, 202]),
        (1, [203, 204]),
    ]
    ids = [data.test.ids[r] for r in steps[1].test_rows]
    assert [(task, [ids[i] for i in at]) for task, at in steps[1].test_tasks] == [(2, [205, 206]), (0, [201, 202])]
