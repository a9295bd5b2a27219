"""How long `python -m cml plan` takes on a COCO-sized dataset: the first call parses the
annotation JSONs, later calls read the cached parse.

    python bench/plan_coco_scale.py [--config configs/coco_b0_c10.yaml] [--repeats 3]

Writes, in a temporary folder, MS-COCO 2014's layout at its real size (82,783 train and 40,504
val images, about 7.3 annotations per image, 1% of them crowd, the 80 real categories) with
one tiny valid JPEG per image (plan checks every image as a run does, verdicts cached), then
times the command in fresh processes:
once with an empty parse cache, then `--repeats` times with the cache. The ratio is what the
cache saves; the absolute times depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from coco_fixture import COCO_CATEGORIES  # noqa: E402

SIZES = {"train2014": 82_783, "val2014": 40_504}


def _tiny_jpeg() -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


TINY_JPEG = _tiny_jpeg()


def write_split(root: Path, split: str, count: int, rng: np.random.Generator, first_id: int) -> None:
    folder = root / split
    folder.mkdir(parents=True)
    cat_ids = np.array([c for c, _ in COCO_CATEGORIES])
    prior = 1.0 / np.arange(1, 81) ** 0.9  # long-tailed, like COCO's categories
    prior /= prior.sum()
    images, annotations, ann_id = [], [], 1
    for k in range(count):
        image_id = first_id + k
        name = f"COCO_{split}_{image_id:012d}.jpg"
        (folder / name).write_bytes(TINY_JPEG)
        images.append({"id": image_id, "file_name": name, "width": 640, "height": 480})
        for cat in rng.choice(cat_ids, size=int(rng.poisson(7.3)), p=prior):
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(cat),
                    "iscrowd": int(rng.random() < 0.01),
                    "bbox": [1, 2, 30, 40],
                    "area": 1200.0,
                }
            )
            ann_id += 1
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in COCO_CATEGORIES],
    }
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


def timed_plan(config: str, root: Path, cache: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cml", "plan", config, "--set", f"data.root={root}", "--set", f"data.cache_dir={cache}"],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/coco_b0_c10.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "coco", Path(tmp) / "cache"
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        write_split(root, "train2014", SIZES["train2014"], rng, 1)
        write_split(root, "val2014", SIZES["val2014"], rng, 1_000_000)
        size = sum(p.stat().st_size for p in (root / "annotations").iterdir()) / 1e6
        print(f"wrote the dataset ({size:.0f} MB of annotations) in {time.perf_counter() - start:.1f} s")
        first = timed_plan(args.config, root, cache)
        cached = [timed_plan(args.config, root, cache) for _ in range(args.repeats)]
        median = statistics.median(cached)
        print(f"plan, first call (parse): {first:.2f} s")
        print(f"plan, cached parse (median of {args.repeats}): {median:.2f} s")
        print(f"ratio cached / first: {median / first:.3f}")


if __name__ == "__main__":
    main()
