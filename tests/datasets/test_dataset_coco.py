import json

import numpy as np
import pytest
from coco_fixture import write_coco

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS

CATS = [(3, "zebra"), (1, "person"), (7, "apple")]  # non-contiguous, unsorted ids


def coco_cfg(root, *extra):
    return load_config(None, ["data.dataset=coco", f"data.root={root}", *extra]).data


@pytest.fixture
def coco(tmp_path):
    splits = {
        "train2014": {10: [(1, 0), (3, 0)], 25: [(7, 1)], 31: [], 40: [(7, 0), (7, 0)], 55: [(3, 0)]},
        "val2014": {5: [(1, 0)], 6: [(3, 1), (7, 0)]},
    }
    return write_coco(tmp_path / "coco", splits, CATS, missing=("COCO_train2014_000000000055.jpg",))


def test_labels_columns_and_ids(coco):
    data = DATASETS.get("coco").build(coco_cfg(coco))
    assert data.class_names == ["person", "zebra", "apple"]  # ascending category id 1, 3, 7
    assert data.train.ids == [10, 25, 31, 40]  # 55 is missing on disk
    # crowd-only image 25 has no label by default; 31 has none at all; 40 apple twice -> once
    assert data.train.labels.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert data.test.labels.tolist() == [[1, 0, 0], [0, 0, 1]]
    assert data.skipped == {"train_missing_files": 1}
    assert data.train.paths[0].endswith("train2014/COCO_train2014_000000000010.jpg")


def test_crowd_as_positive(coco):
    data = DATASETS.get("coco").build(coco_cfg(coco, "data.coco.crowd=positive"))
    assert data.train.labels[1].tolist() == [0, 0, 1] and data.test.labels[1].tolist() == [0, 1, 1]


def test_parse_is_cached_and_refreshed(coco, tmp_path):
    cache = tmp_path / "cache"
    first = DATASETS.get("coco").build(coco_cfg(coco, f"data.cache_dir={cache}"))
    assert len(list(cache.glob("*.npz"))) == 2
    again = DATASETS.get("coco").build(coco_cfg(coco, f"data.cache_dir={cache}"))
    assert np.array_equal(first.train.labels, again.train.labels) and first.train.ids == again.train.ids
    path = coco / "annotations" / "instances_val2014.json"
    doc = json.loads(path.read_text())
    doc["annotations"].append({"id": 99, "image_id": 5, "category_id": 7, "iscrowd": 0})
    path.write_text(json.dumps(doc) + " ")  # new size: the cache key changes
    assert DATASETS.get("coco").build(coco_cfg(coco, f"data.cache_dir={cache}")).test.labels[0].tolist() == [1, 0, 1]


def test_absent_dataset_message(tmp_path):
    with pytest.raises(UserError, match="does not exist; expected ROOT/train2014/.*cocodataset.org"):
        DATASETS.get("coco").build(coco_cfg(tmp_path / "nothing"))
    (tmp_path / "half" / "train2014").mkdir(parents=True)
    with pytest.raises(UserError, match="instances_train2014.json not found"):
        DATASETS.get("coco").build(coco_cfg(tmp_path / "half"))


def test_malformed_json_names_file_and_line(coco):
    (coco / "annotations" / "instances_train2014.json").write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(UserError, match=r"instances_train2014.json: line 2: not valid JSON"):
        DATASETS.get("coco").build(coco_cfg(coco))


def test_unknown_category_is_reported(coco):
    path = coco / "annotations" / "instances_val2014.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["category_id"] = 42
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="instances_val2014.json: annotation #0 .* unknown category 42"):
        DATASETS.get("coco").build(coco_cfg(coco))


def test_crowd_modes_share_one_parse(coco, tmp_path):
    """The parse keeps crowd and non-crowd annotations apart, so every `data.coco.crowd` mode reads
    the same cached files and none can see another mode's labels."""
    cache = tmp_path / "cache"
    loaded = {
        mode: DATASETS.get("coco").build(coco_cfg(coco, f"data.cache_dir={cache}", f"data.coco.crowd={mode}"))
        for mode in ("ignore", "krt", "positive", "ignore")
    }
    assert len(list(cache.glob("*.npz"))) == 2
    # train image 25 holds only a crowd apple; val image 6 a crowd zebra and a plain apple
    assert loaded["ignore"].train.labels[1].tolist() == [0, 0, 0] and loaded["ignore"].train.select is None
    assert loaded["krt"].train.labels[1].tolist() == [0, 0, 0]
    assert loaded["krt"].train.selection[1].tolist() == [0, 0, 1]
    assert loaded["krt"].test.labels[1].tolist() == [0, 0, 1] and loaded["krt"].test.selection[1].tolist() == [0, 1, 1]
    assert loaded["positive"].train.labels[1].tolist() == [0, 0, 1] and loaded["positive"].train.select is None
