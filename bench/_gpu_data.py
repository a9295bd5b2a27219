"""Generated data for bench/gpu_check.sh: MS-COCO 2014's on-disk layout with JPEGs at COCO's
resolution (640x480 by default), and PRS split files (COCOseq's layout) over the same images.

    python bench/_gpu_data.py ROOT --train 3000 --val 500 [--width 640 --height 480]
        [--split-dir DIR --per-task 200 --test-per-task 50] [--workers 16]

ROOT gets train2014/, val2014/ and annotations/instances_{train,val}2014.json with the 80 real
categories (tests/coco_fixture.py) and about 7.3 annotations per image, 1% crowd, as in
bench/plan_coco_scale.py. Each image belongs to one of 4 groups of 20 categories and is annotated
with categories of its group only, so that PRS-style tasks (a task's images carry only its own
classes, as COCOseq) exist: task k holds images of group k, and its classes are group k's first
17 or 18 (70 classes in multihot_map.json, as COCOseq). The pictures are a random colour
gradient, one rectangle per annotation in its category's colour, and noise, saved at JPEG quality
90: about 110 KB each, near real COCO photos (about 160 KB), so decoding costs what it costs there.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from coco_fixture import COCO_CATEGORIES  # noqa: E402

GROUPS = 4
VAL_FIRST_ID = 1_000_000  # COCO ids are unique across train2014 and val2014
_NOISE: dict = {}


def annotations(count: int, first_id: int, rng: np.random.Generator) -> list[tuple[int, int, list]]:
    """(image id, group, [(category id, iscrowd), ...]) per image."""
    cat_ids = np.array([c for c, _ in COCO_CATEGORIES])
    images = []
    for k in range(count):
        group = int(rng.integers(GROUPS))
        members = cat_ids[group::GROUPS]  # 20 categories, spread over the alphabet
        prior = 1.0 / np.arange(1, len(members) + 1) ** 0.9
        cats = rng.choice(members, size=max(1, int(rng.poisson(7.3))), p=prior / prior.sum())
        images.append((first_id + k, group, [(int(c), int(rng.random() < 0.01)) for c in cats]))
    return images


def _picture(job) -> int:
    path, width, height, seed, cats = job
    from PIL import Image

    rng = np.random.default_rng(seed)
    if "bank" not in _NOISE:  # one noise field per process, cropped at random offsets
        _NOISE["bank"] = np.random.default_rng(seed).normal(0, 14, (height + 64, width + 64, 3)).astype(np.int16)
    dy, dx = rng.integers(64, size=2)
    gx = np.arange(width, dtype=np.float32)[None, :, None] * rng.uniform(0.05, 0.4, 3)
    gy = np.arange(height, dtype=np.float32)[:, None, None] * rng.uniform(0.05, 0.4, 3)
    img = ((gx + gy + rng.uniform(0, 255, 3)) % 256).astype(np.int16)
    for cat, _crowd in cats:
        colour = np.array([(cat * 53) % 256, (cat * 97) % 256, (cat * 151) % 256], dtype=np.int16)
        w, h = rng.integers(width // 8, width // 2), rng.integers(height // 8, height // 2)
        x, y = rng.integers(width - w), rng.integers(height - h)
        img[y : y + h, x : x + w] = colour
    img += _NOISE["bank"][dy : dy + height, dx : dx + width]
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return 1


def write_split(root: Path, split: str, images, width: int, height: int, pool) -> None:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in COCO_CATEGORIES],
    }
    jobs = []
    for image_id, _group, cats in images:
        name = f"COCO_{split}_{image_id:012d}.jpg"
        doc["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
        for cat, crowd in cats:
            doc["annotations"].append(
                {
                    "id": len(doc["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "iscrowd": crowd,
                    "bbox": [1, 2, 30, 40],
                    "area": 1200.0,
                }
            )
        jobs.append((folder / name, width, height, image_id, cats))
    sum(pool.imap_unordered(_picture, jobs, chunksize=16)) if pool else sum(map(_picture, jobs))
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


def write_prs_splits(split_dir: Path, train, val, per_task: int, test_per_task: int) -> None:
    """COCOseq's files: multihot_map.json (70 classes), {train,test}_task{k}_id_coco.json, and
    the class groups (major/moderate/minor_cats.json, as the PRS release)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    names = dict(COCO_CATEGORIES)
    cat_ids = [c for c, _ in COCO_CATEGORIES]
    used = [cat_ids[g::GROUPS][: 18 if g < 2 else 17] for g in range(GROUPS)]  # 18 + 18 + 17 + 17 = 70
    flat = [c for group in used for c in group]
    (split_dir / "multihot_map.json").write_text(json.dumps({names[c]: i for i, c in enumerate(flat)}))
    for k in range(GROUPS):
        keep = set(used[k])
        for kind, images, limit in (("train", train, per_task), ("test", val, test_per_task)):
            ids = [i for i, g, cats in images if g == k and any(c in keep for c, _ in cats)][:limit]
            (split_dir / f"{kind}_task{k}_id_coco.json").write_text(json.dumps(ids))
    thirds = np.array_split(np.array([names[c] for c in flat]), 3)
    for name, part in zip(("major_cats.json", "moderate_cats.json", "minor_cats.json"), thirds):
        (split_dir / name).write_text(json.dumps(part.tolist()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--split-dir", type=Path)
    parser.add_argument("--per-task", type=int, default=200)
    parser.add_argument("--test-per-task", type=int, default=50)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    train, val = annotations(args.train, 1, rng), annotations(args.val, VAL_FIRST_ID, rng)
    pool = multiprocessing.Pool(args.workers) if args.workers > 1 else None
    try:
        write_split(args.root, "train2014", train, args.width, args.height, pool)
        write_split(args.root, "val2014", val, args.width, args.height, pool)
    finally:
        if pool:
            pool.close()
            pool.join()
    if args.split_dir:
        write_prs_splits(args.split_dir, train, val, args.per_task, args.test_per_task)
    files = sorted((args.root / "train2014").iterdir())
    mean_kb = sum(p.stat().st_size for p in files) / max(1, len(files)) / 1024
    print(
        json.dumps(
            {
                "train": args.train,
                "val": args.val,
                "size": f"{args.width}x{args.height}",
                "mean_jpeg_kb": round(mean_kb, 1),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
