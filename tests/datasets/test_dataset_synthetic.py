import json

import numpy as np

from cml.config import load_config
from cml.core.registry import DATASETS
from cml.datasets.coco import parse_instances
from cml.datasets.synthetic import CLASS_NAMES, dataset_folder


def cfg(root, *extra):
    return load_config(
        None,
        [
            f"data.root={root}",
            "data.synthetic.train_images=300",
            "data.synthetic.test_images=40",
            "data.synthetic.image_size=32",
            *extra,
        ],
    ).data


def test_generation_is_deterministic(tmp_path):
    a, b = cfg(tmp_path / "a"), cfg(tmp_path / "b")
    DATASETS.get("synthetic").build(a)
    DATASETS.get("synthetic").build(b)
    fa, fb = dataset_folder(a), dataset_folder(b)
    for rel in ("annotations/instances_train.json", "annotations/instances_val.json"):
        assert (fa / rel).read_bytes() == (fb / rel).read_bytes()
    files = sorted(p.relative_to(fa) for p in fa.rglob("*.jpg"))
    assert len(files) == 340
    assert all((fa / f).read_bytes() == (fb / f).read_bytes() for f in files[::17])
    other = cfg(tmp_path / "a", "data.synthetic.seed=1")
    DATASETS.get("synthetic").build(other)
    assert (dataset_folder(other) / "annotations/instances_train.json").read_bytes() != (
        fa / "annotations/instances_train.json"
    ).read_bytes()


def test_coco_round_trip_and_properties(tmp_path):
    c = cfg(tmp_path)
    data = DATASETS.get("synthetic").build(c)
    doc = json.loads((dataset_folder(c) / "annotations" / "instances_train.json").read_text())
    ids = sorted(cat["id"] for cat in doc["categories"])
    assert len(ids) == 24 and ids != list(range(ids[0], ids[0] + 24))  # non-contiguous like COCO
    # independent read of the JSON: image -> set of category names
    name_of = {cat["id"]: cat["name"] for cat in doc["categories"]}
    truth = {}
    for ann in doc["annotations"]:
        truth.setdefault(ann["image_id"], set()).add(name_of[ann["category_id"]])
    for row, image_id in enumerate(data.train.ids):
        got = {data.class_names[j] for j in np.flatnonzero(data.train.labels[row])}
        assert got == truth[image_id]
    counts = data.train.labels.sum(1)
    assert counts.min() == 1 and counts.max() == 4
    freq = np.sort(data.train.labels.sum(0))[::-1]
    assert freq[0] > 5 * freq[-1]  # long tail
    assert sorted(data.class_names) == sorted(CLASS_NAMES)
    assert parse_instances(dataset_folder(c) / "annotations" / "instances_val.json")[4].shape == (40, 24)


def test_co_occurrence_is_correlated(tmp_path):
    data = DATASETS.get("synthetic").build(cfg(tmp_path))
    y = data.train.labels.astype(float)
    joint = y.T @ y / len(y)
    p = y.mean(0)
    lift = joint / np.outer(p, p)
    np.fill_diagonal(lift, np.nan)
    # some pairs co-occur far more often than independence predicts, some far less
    assert np.nanmax(lift) > 3 and np.nanmin(lift) < 0.5
