"""configs/coco_b0_c10_multilane.yaml end to end on a folder in MS-COCO 2014's layout whose JPEGs
are not square, at tiny sizes (the model's test variant, 32 px): the config's MULTI-LANE geometry
(keep_aspect) reaches the run, the image cache holds the training originals and the test views,
and a run from the cache equals one from the files."""

import json
from pathlib import Path

import numpy as np
from coco_fixture import write_coco
from PIL import Image
from tests_helpers import model_overrides, run_cli

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = [(1, "apple"), (2, "bear"), (3, "cat"), (4, "dog")]


def non_square_coco(root: Path) -> Path:
    train = {i: [(1 + i % 4, 0), (1 + (i + 1) % 4, 0)] for i in range(1, 33)}
    val = {100 + i: [(1 + i % 4, 0)] for i in range(16)}
    write_coco(root, {"train2014": train, "val2014": val}, CATEGORIES)
    rng = np.random.default_rng(0)
    for split, ids in (("train2014", train), ("val2014", val)):
        for i in ids:  # landscape and portrait, 40 to 72 px
            w, h = (72, 40 + i % 3 * 8) if i % 2 else (44 + i % 3 * 8, 64)
            coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
            image.save(root / split / f"COCO_{split}_{i:012d}.jpg", quality=90)
    return root


def test_the_multilane_protocol_config_runs_on_non_square_coco_images(tmp_path):
    root = non_square_coco(tmp_path / "coco")
    overrides = [f"data.root={root}", "data.image_size=32", "data.num_workers=0", "model.pretrained=false"]
    overrides += model_overrides("multilane") + ["scenario.increment=2", "train.epochs=1", "train.batch_size=8"]
    overrides += ["eval.batch_size=16", f"data.cache_dir={tmp_path / 'cache'}"]
    steps = {}
    for source in ("files", "cache"):
        settings = overrides + [f"data.cache={source == 'cache'}"]
        assert run_cli(REPO / "configs" / "coco_b0_c10_multilane.yaml", tmp_path / source, settings) == 0
        steps[source] = json.loads((tmp_path / source / "results.json").read_text())["steps"]
    assert [s["classes"] for s in steps["files"]] == [["apple", "bear"], ["cat", "dog"]]
    assert all(np.isfinite(s["map"]) for s in steps["files"])
    assert [s["map"] for s in steps["files"]] == [s["map"] for s in steps["cache"]]
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.npy"))
    assert cached == ["images", "originals", "originals"]  # test views; originals and their index
    (views,) = (tmp_path / "cache").glob("images-*.npy")
    assert views.name.startswith("images-centre36-32px-16-")  # int(256 / 224 x 32) = 36
