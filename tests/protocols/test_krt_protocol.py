"""KRT's image selection and labels (its official COCO loader), on a COCO-layout fixture with
crowd-only and mixed-crowd images, against counts computed here from the raw annotations; and the
VOC rule (selection and labels from non-difficult objects)."""

from pathlib import Path

import numpy as np
import pytest
from coco_fixture import COCO_CATEGORIES, write_coco

from cml.commands.plan import plan_summary
from cml.config import load_config
from cml.core.registry import DATASETS
from cml.protocols.steps import plan_steps

REPO = Path(__file__).resolve().parents[2]
NAME = dict(COCO_CATEGORIES)
ALPHABETICAL = sorted(NAME.values())


def random_annotations(rng, first_id: int, count: int) -> dict:
    """{image id: [(category id, iscrowd), ...]}: 0-3 annotations, a quarter of them crowd, plus
    crowd-only images and images with one class annotated both ways."""
    cat_ids = [c for c, _ in COCO_CATEGORIES]
    images = {}
    for i in range(count):
        anns = [(int(rng.choice(cat_ids)), int(rng.random() < 0.25)) for _ in range(rng.integers(0, 4))]
        if i % 7 == 0:  # crowd only
            anns = [(int(rng.choice(cat_ids)), 1)]
        if i % 11 == 0 and anns:  # the same class as crowd and as a plain object
            anns.append((anns[0][0], 1 - anns[0][1]))
        images[first_id + i] = anns
    return images


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    rng = np.random.default_rng(5)
    splits = {"train2014": random_annotations(rng, 1000, 400), "val2014": random_annotations(rng, 5000, 200)}
    return write_coco(tmp_path_factory.mktemp("coco"), splits, COCO_CATEGORIES), splits


def by_the_rule(images: dict, block: set[str]):
    """KRT's loader, written from its rule: selected when any annotation (crowd too) is of the
    block; labels = the block's classes among the non-crowd annotations."""
    selected = {}
    for image_id, anns in images.items():
        if any(NAME[c] in block for c, _ in anns):
            selected[image_id] = {NAME[c] for c, crowd in anns if not crowd and NAME[c] in block}
    return selected


@pytest.mark.parametrize("config, sizes", [("coco_b0_c10.yaml", [10] * 8), ("coco_b40_c10.yaml", [40] + [10] * 4)])
def test_krt_selection_and_labels(coco, config, sizes):
    root, splits = coco
    cfg = load_config(REPO / "configs" / config, [f"data.root={root}"])
    assert cfg.data.coco.crowd == "krt"
    plan = plan_steps(cfg, DATASETS.get("coco").build(cfg.data))
    names = plan.data.class_names
    assert names == ALPHABETICAL
    info = plan_summary(cfg, plan, config)
    start, without_positive = 0, 0
    for t, (step, size) in enumerate(zip(plan.steps, sizes)):
        block, seen = set(ALPHABETICAL[start : start + size]), set(ALPHABETICAL[: start + size])
        train, test = by_the_rule(splits["train2014"], block), by_the_rule(splits["val2014"], seen)
        got_train = {
            plan.data.train.ids[r]: {names[c] for c in np.flatnonzero(y == 1)}
            for r, y in zip(step.train_rows, step.train_targets)
        }
        got_test = {
            plan.data.test.ids[r]: {names[c] for c in np.flatnonzero(y == 1)}
            for r, y in zip(step.test_rows, step.test_targets)
        }
        assert got_train == train and got_test == test
        counts = [sum(name in labels for labels in train.values()) for name in ALPHABETICAL[start : start + size]]
        assert info["steps"][t]["n_train"] == len(train) and info["steps"][t]["n_test"] == len(test)
        assert info["steps"][t]["train_without_positive"] == sum(not labels for labels in train.values())
        assert info["steps"][t]["test_without_positive"] == sum(not labels for labels in test.values())
        assert info["steps"][t]["train_positives_per_class"] == {
            "min": min(counts),
            "median": float(np.median(counts)),
            "max": max(counts),
        }
        without_positive += info["steps"][t]["train_without_positive"]
        start += size
    assert without_positive > 0  # crowd-only images are in their step with no positive label


def test_crowd_modes_differ(coco):
    """The other modes: `ignore` neither selects nor labels by crowd annotations, `positive` does both."""
    root, splits = coco
    block = set(ALPHABETICAL[:10])
    for mode, selected_by, labelled_by in (("ignore", {0}, {0}), ("positive", {0, 1}, {0, 1})):
        cfg = load_config(REPO / "configs" / "coco_b0_c10.yaml", [f"data.root={root}", f"data.coco.crowd={mode}"])
        plan = plan_steps(cfg, DATASETS.get("coco").build(cfg.data))
        step = plan.steps[0]
        want = {
            i: {NAME[c] for c, crowd in anns if crowd in labelled_by and NAME[c] in block}
            for i, anns in splits["train2014"].items()
            if any(NAME[c] in block and crowd in selected_by for c, crowd in anns)
        }
        got = {
            plan.data.train.ids[r]: {plan.data.class_names[c] for c in np.flatnonzero(y == 1)}
            for r, y in zip(step.train_rows, step.train_targets)
        }
        assert got == want and all(got.values())


VOC = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def test_voc_selection_and_labels_from_non_difficult_objects(tmp_path):
    """VOC's class files flag 1 (a non-difficult object), 0 (only difficult ones) or -1: KRT's
    loader selects and labels by non-difficult objects, which is data.voc.difficult: negative."""
    rng = np.random.default_rng(3)
    main_dir = tmp_path / "VOCdevkit" / "VOC2007"
    flags = {}
    for part, count in (("trainval", 80), ("test", 60)):
        ids = [f"{part[:2]}{i:04d}" for i in range(count)]
        flags[part] = rng.choice([1, 0, -1, -1, -1, -1, -1, -1], size=(count, 20))
        for c, name in enumerate(VOC):
            path = main_dir / "ImageSets" / "Main" / f"{name}_{part}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{im} {f:2d}\n" for im, f in zip(ids, flags[part][:, c])))
        (main_dir / "JPEGImages").mkdir(parents=True, exist_ok=True)
        for im in ids:
            (main_dir / "JPEGImages" / f"{im}.jpg").write_bytes(b"")  # the plan never opens images
    cfg = load_config(REPO / "configs" / "voc_b0_c4.yaml", [f"data.root={tmp_path}"])
    plan = plan_steps(cfg, DATASETS.get("voc").build(cfg.data))
    for t, step in enumerate(plan.steps):
        block = slice(4 * t, 4 * t + 4)
        want_rows = np.flatnonzero((flags["trainval"][:, block] == 1).any(1))
        assert step.train_rows.tolist() == want_rows.tolist()
        assert (step.train_targets[:, block] == (flags["trainval"][want_rows, block] == 1)).all()
        assert step.test_rows.tolist() == np.flatnonzero((flags["test"][:, : 4 * t + 4] == 1).any(1)).tolist()
