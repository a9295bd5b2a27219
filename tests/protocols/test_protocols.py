"""Each published-protocol config on a small fixture in the dataset's real layout: number of
steps, classes of each step and images of each step, against counts made here independently."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from coco_fixture import COCO_CATEGORIES, write_coco
from PIL import Image

from cml.commands.cli import main
from cml.config import load_config
from cml.core.registry import DATASETS
from cml.scenarios.builder import build_scenario

REPO = Path(__file__).resolve().parents[2]
VOC_CLASSES = [
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
NUS_CONCEPTS = [f"concept{(k * 37) % 81:02d}" for k in range(81)]  # file order != alphabetical


def labels_of(i: int, n: int) -> set[int]:
    """Deterministic label sets: two classes per image, an empty one every 13th image."""
    return set() if i % 13 == 12 else {i % n, (3 * i + 7) % n}


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path, "JPEG")


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    cats = COCO_CATEGORIES
    splits = {
        "train2014": {100 + i: [(cats[c][0], 0) for c in labels_of(i, 80)] for i in range(170)},
        "val2014": {900 + i: [(cats[c][0], 0) for c in labels_of(i + 5, 80)] for i in range(90)},
    }
    return write_coco(root, splits, cats)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    main_dir = tmp_path_factory.mktemp("voc") / "VOCdevkit" / "VOC2007"
    for part, count, offset in (("trainval", 60, 0), ("test", 40, 3)):
        ids = [f"{part[0]}{i:05d}" for i in range(count)]
        for c, name in enumerate(VOC_CLASSES):
            lines = [f"{im} {1 if c in labels_of(i + offset, 20) else -1:2d}" for i, im in enumerate(ids)]
            path = main_dir / "ImageSets" / "Main" / f"{name}_{part}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
        for im in ids:
            jpeg(main_dir / "JPEGImages" / f"{im}.jpg")
    return main_dir.parent.parent


@pytest.fixture(scope="module")
def nus_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nus")
    (root / "Concepts81.txt").write_text("\n".join(NUS_CONCEPTS) + "\n")
    for part, count, offset in (("Train", 200, 0), ("Test", 100, 1)):
        paths = [f"scene\\{part.lower()}_{i:04d}.jpg" for i in range(count)]
        (root / "ImageList").mkdir(exist_ok=True)
        (root / "ImageList" / f"{part}Imagelist.txt").write_text("\n".join(paths) + "\n")
        for c, concept in enumerate(NUS_CONCEPTS):
            flags = ["1" if c in labels_of(i + offset, 81) else "0" for i in range(count)]
            (root / "TrainTestLabels").mkdir(exist_ok=True)
            (root / "TrainTestLabels" / f"Labels_{concept}_{part}.txt").write_text("\n".join(flags) + "\n")
        for p in paths:
            jpeg(root / "images" / p.replace("\\", "/"))
    return root


def expected(names_in_file_order, n_train, n_test, offsets, sizes):
    """Per step: (class names, number of train images, number of test images), by plain Python."""
    order = sorted(range(len(names_in_file_order)), key=lambda c: names_in_file_order[c])
    out, start = [], 0
    train_sets = [labels_of(i + offsets[0], len(order)) for i in range(n_train)]
    test_sets = [labels_of(i + offsets[1], len(order)) for i in range(n_test)]
    for size in sizes:
        step = set(order[start : start + size])
        seen = set(order[: start + size])
        out.append(
            (
                [names_in_file_order[c] for c in order[start : start + size]],
                sum(1 for s in train_sets if s & step),
                sum(1 for s in test_sets if s & seen),
            )
        )
        start += size
    return out


def scenario_steps(config, root):
    cfg = load_config(REPO / "configs" / config, [f"data.root={root}", "data.image_size=8"])
    scenario = build_scenario(cfg, DATASETS.get(cfg.data.dataset).build(cfg.data))
    bench = scenario.benchmark
    assert len(bench.train_stream) == len(bench.test_stream) == len(scenario.steps)
    return [
        ([scenario.class_names[c] for c in exp.classes_in_this_experience], len(exp.dataset), len(test.dataset))
        for exp, test in zip(bench.train_stream, bench.test_stream)
    ]


COCO_NAMES = [n for _, n in COCO_CATEGORIES]


@pytest.mark.parametrize(
    "config, sizes",
    [("coco_b0_c10.yaml", [10] * 8), ("coco_b40_c10.yaml", [40, 10, 10, 10, 10]), ("coco_static.yaml", [80])],
)
def test_coco_protocols(coco_root, config, sizes):
    assert scenario_steps(config, coco_root) == expected(COCO_NAMES, 170, 90, (0, 5), sizes)


@pytest.mark.parametrize("config, sizes", [("voc_b0_c4.yaml", [4] * 5), ("voc_b10_c2.yaml", [10, 2, 2, 2, 2, 2])])
def test_voc_protocols(voc_root, config, sizes):
    assert scenario_steps(config, voc_root) == expected(VOC_CLASSES, 60, 40, (0, 3), sizes)


@pytest.mark.parametrize("config, sizes", [("nuswide_b0_c9.yaml", [9] * 9), ("nuswide_static.yaml", [81])])
def test_nuswide_protocols(nus_root, config, sizes):
    steps = scenario_steps(config, nus_root)
    # unlabeled images (every 13th) are skipped by the loader, so they never count
    assert steps == expected(NUS_CONCEPTS, 200, 100, (0, 1), sizes)


def test_missing_coco_fails_fast_with_the_layout(tmp_path):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cml", "run", str(REPO / "configs" / "coco_b40_c10.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2 and time.monotonic() - start < 10
    assert "data.root: data/coco does not exist" in proc.stderr
    assert "instances_{train,val}2014.json" in proc.stderr and "cocodataset.org" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_coco_b40_c10_runs_end_to_end_on_a_fixture(coco_root, tmp_path):
    out = tmp_path / "run"
    args = ["run", str(REPO / "configs" / "coco_b40_c10.yaml"), "--out", str(out)]
    for item in (
        f"data.root={coco_root}",
        "data.image_size=32",
        "data.num_workers=0",
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "train.epochs=1",
        "train.batch_size=32",
        "train.lr=0.001",
        "eval.batch_size=64",
    ):
        args += ["--set", item]
    assert main(args) == 0
    import json

    results = json.loads((out / "results.json").read_text())
    assert [len(s["classes"]) for s in results["steps"]] == [40, 10, 10, 10, 10]
    assert results["steps"][0]["classes"][:3] == ["airplane", "apple", "backpack"]


# PRS split files: tasks own disjoint class blocks and list their images by id, as in COCOseq.
