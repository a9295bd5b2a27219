"""The PRS protocol's shipped configs (COCOseq, NUS-WIDEseq) on fixtures in the published layout."""

import json
from pathlib import Path

from coco_fixture import COCO_CATEGORIES, write_coco
from test_protocols import REPO, jpeg, labels_of  # noqa: F401

from cml.config import load_config
from cml.core.registry import DATASETS
from cml.scenarios.builder import build_scenario

PRS_BLOCKS = [["bus", "cat", "dog"], ["apple", "pizza"], ["kite", "skis", "tie"], ["book", "vase"]]


def write_prs_split(folder: Path, map_names: list[str], train_ids: list[list], test_ids: list[list], suffix: str):

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "multihot_map.json").write_text(json.dumps({n: i for i, n in enumerate(map_names)}))
    for k, (tr, te) in enumerate(zip(train_ids, test_ids)):
        (folder / f"train_task{k}_id_{suffix}.json").write_text(json.dumps(tr))
        (folder / f"test_task{k}_id_{suffix}.json").write_text(json.dumps(te))


def write_groups(folder: Path, names: list[str], suffix: str = "") -> list[str]:
    """PRS's class lists (code/resources/{major,moderate,minor}_cats*.json: JSON lists of names),
    and the overrides that name them."""

    thirds = [names[0::3], names[1::3], names[2::3]]
    overrides = []
    for group, prs_name, members in zip(("majority", "moderate", "minority"), ("major", "moderate", "minor"), thirds):
        path = folder / f"{prs_name}_cats{suffix}.json"
        path.write_text(json.dumps(members))
        overrides.append(f"eval.groups.{group}={path}")
    return overrides


def test_cocoseq_prs_config(tmp_path):
    cat_id = dict((n, i) for i, n in COCO_CATEGORIES)
    train, test, train_ids, test_ids = {}, {}, [], []
    for k, block in enumerate(PRS_BLOCKS):
        ids = [1000 * (k + 1) + i for i in range(4 + k)]
        train.update(
            {
                im: [(cat_id[block[i % len(block)]], 0), (cat_id[block[(i + 1) % len(block)]], 0)]
                for i, im in enumerate(ids)
            }
        )
        tids = [5000 + 10 * k + i for i in range(2)]
        test.update({im: [(cat_id[block[i]], 0)] for i, im in enumerate(tids)})
        train_ids.append(ids + ([999999] if k == 0 else []))  # one id with no image in the dataset
        test_ids.append(tids)
    root = write_coco(tmp_path / "coco", {"train2014": train, "val2014": test}, COCO_CATEGORIES)
    map_names = sorted(n for block in PRS_BLOCKS for n in block)
    write_prs_split(tmp_path / "split", map_names, train_ids, test_ids, "coco")
    cfg = load_config(
        REPO / "configs" / "cocoseq_prs.yaml",
        [
            f"data.root={root}",
            f"scenario.split_dir={tmp_path / 'split'}",
            "data.image_size=8",
            *write_groups(tmp_path / "split", map_names),
        ],
    )
    assert cfg.scenario.task_order == [0, 3, 1, 2] and cfg.train.online and cfg.train.batch_size == 10
    assert (cfg.model.outputs, cfg.train.loss, cfg.train.clip_grad_value) == ("all", "multilabel_soft_margin", 5)
    assert cfg.data.coco.crowd == "positive" and cfg.eval.per_task and cfg.eval.strict
    data = DATASETS.get("coco").build(cfg.data)
    scenario = build_scenario(cfg, data)
    bench = scenario.benchmark
    assert len(bench.train_stream) == 4
    seen_test = []
    for t, task in enumerate([0, 3, 1, 2]):
        exp = bench.train_stream[t]
        assert [scenario.class_names[c] for c in exp.classes_in_this_experience] == sorted(PRS_BLOCKS[task])
        assert sorted(scenario.data.train.ids[r] for r in scenario.steps[t].train_rows) == sorted(
            i for i in train_ids[task] if i != 999999
        )
        seen_test += test_ids[task]
        assert sorted(scenario.data.test.ids[r] for r in scenario.steps[t].test_rows) == sorted(seen_test)
    assert scenario.data.skipped["split_train_ids_not_found"] == 1
    assert [len(e.dataset) for e in bench.train_stream] == [len(train_ids[k]) - (k == 0) for k in (0, 3, 1, 2)]
    assert all(e.n_outputs == len(map_names) for e in bench.train_stream)  # every output from the start
    names = scenario.class_names
    assert {g: sorted(names[c] for c in cs) for g, cs in scenario.class_groups.items()} == {
        "majority": sorted(map_names[0::3]),
        "moderate": sorted(map_names[1::3]),
        "minority": sorted(map_names[2::3]),
    }


def test_nuswideseq_prs_config(tmp_path):
    concepts = [f"tag{k:02d}" for k in range(81)]
    blocks = [concepts[2 * k : 2 * k + 2] for k in range(6)]  # 6 tasks of 2 concepts
    root = tmp_path / "nus"
    (root / "ImageList").mkdir(parents=True)
    (root / "TrainTestLabels").mkdir()
    (root / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    task_lines = {"Train": [[] for _ in range(6)], "Test": [[] for _ in range(6)]}
    for part, count in (("Train", 36), ("Test", 18)):
        # line i belongs to task i % 6; every 9th line has no concept (skipped by the loader)
        labels = [set() if i % 9 == 8 else {blocks[i % 6][(i // 6) % 2]} for i in range(count)]
        paths = [f"d\\{part}{i}.jpg" for i in range(count)]
        (root / "ImageList" / f"{part}Imagelist.txt").write_text("\n".join(paths) + "\n")
        for c in concepts:
            (root / "TrainTestLabels" / f"Labels_{c}_{part}.txt").write_text(
                "\n".join("1" if c in s else "0" for s in labels) + "\n"
            )
        for i, p in enumerate(paths):
            jpeg(root / "images" / p.replace("\\", "/"))
            task_lines[part][i % 6].append(i)
    write_prs_split(
        tmp_path / "split", [c for b in blocks for c in b], task_lines["Train"], task_lines["Test"], "nuswide"
    )
    cfg = load_config(
        REPO / "configs" / "nuswideseq_prs.yaml",
        [
            f"data.root={root}",
            f"scenario.split_dir={tmp_path / 'split'}",
            "data.image_size=8",
            *write_groups(tmp_path / "split", [c for b in blocks for c in b], "_nuswide"),
        ],
    )
    assert cfg.scenario.task_order == [3, 1, 0, 5, 4, 2]  # PRS's episodes/nw-split_310542.yaml
    scenario = build_scenario(cfg, DATASETS.get("nuswide").build(cfg.data))
    assert len(scenario.steps) == 6
    seen_test = set()
    for t, task in enumerate(cfg.scenario.task_order):
        assert [scenario.class_names[c] for c in scenario.steps[t].classes] == blocks[task]
        want_train = {i for i in task_lines["Train"][task] if i % 9 != 8}
        assert {scenario.data.train.ids[r] for r in scenario.steps[t].train_rows} == want_train
        seen_test |= {i for i in task_lines["Test"][task] if i % 9 != 8}
        assert {scenario.data.test.ids[r] for r in scenario.steps[t].test_rows} == seen_test
    # unlabeled lines are listed in the split files but are not images of the dataset
    assert scenario.data.skipped["split_train_ids_not_found"] == 4
