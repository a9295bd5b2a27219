"""A generated multi-label image dataset, so that cml runs anywhere with nothing to download.

24 classes named `<colour>_<shape>`; 1 to 4 objects per image; long-tailed class frequencies
(Zipf over a seeded ranking); correlated co-occurrences (classes come in 6 "scenes" of 4, and
an image's further objects are drawn from its first object's scene 70% of the time); objects at
random positions and scales on a noisy background. It is written once, deterministically from
`data.synthetic.seed`, in the MS-COCO instances layout (JPEGs plus
`annotations/instances_{train,val}.json`, non-contiguous category and image ids) and then read
back through the same loader as real MS-COCO.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cml.core.registry import Dataset
from cml.core.schema import SEED_MAX, option
from cml.datasets._types import MultiLabelData
from cml.datasets.coco import load_coco_folder

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
CLASS_NAMES = [f"{c}_{s}" for s in SHAPES for c in COLOURS]  # 24
LABELS_PER_IMAGE = (0.35, 0.30, 0.20, 0.15)  # P(1), P(2), P(3), P(4)
SAME_SCENE = 0.7
FORMAT_VERSION = 1


def _draw(draw: ImageDraw.ImageDraw, shape: str, colour: tuple, box: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    cx, cy, w = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        t = w / 6
        draw.rectangle((cx - t, y0, cx + t, y1), fill=colour)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(w / 6)))
    else:  # diamond
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)


def _sample_labels(rng: np.random.Generator, prior: np.ndarray, scene_of: np.ndarray) -> list[int]:
    count = rng.choice(4, p=LABELS_PER_IMAGE) + 1
    labels = [int(rng.choice(len(prior), p=prior))]
    while len(labels) < count:
        p = prior.copy()
        if rng.random() < SAME_SCENE:
            p = p * (scene_of == scene_of[labels[0]])
        p[labels] = 0
        if p.sum() == 0:
            p = prior.copy()
            p[labels] = 0
        labels.append(int(rng.choice(len(p), p=p / p.sum())))
    return labels


def generate(root: Path, num_classes: int, n_train: int, n_test: int, size: int, seed: int) -> None:
    """Write the dataset into `root` (atomically: a killed generation leaves nothing half-made)."""
    rng = np.random.default_rng(seed)
    names = CLASS_NAMES[:num_classes]
    rank = rng.permutation(num_classes)
    prior = 1.0 / (rank + 1.0) ** 1.1
    prior /= prior.sum()
    scene_of = rng.permutation(np.arange(num_classes) % 6)
    cat_ids = np.sort(rng.choice(np.arange(1, 4 * num_classes), num_classes, replace=False)) + 0
    categories = [{"id": int(i), "name": n, "supercategory": n.split("_")[1]} for i, n in zip(cat_ids, names)]
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "annotations").mkdir(parents=True)
    ann_id = 1
    for split, count in (("train", n_train), ("val", n_test)):
        (tmp / split).mkdir()
        image_ids = np.sort(rng.choice(np.arange(10 * (n_train + n_test)), count, replace=False)) + 1
        images, annotations = [], []
        for image_id in image_ids.tolist():
            base = rng.integers(90, 200, 3)
            noise = rng.normal(0, 18, (size, size, 3))
            pixels = np.clip(base + noise + np.linspace(-25, 25, size)[:, None, None], 0, 255).astype(np.uint8)
            img = Image.fromarray(pixels)
            draw = ImageDraw.Draw(img)
            for label in _sample_labels(rng, prior, scene_of):
                w = float(rng.uniform(0.22, 0.5) * size)
                x0, y0 = (float(v) for v in rng.uniform(0, size - w, 2))
                colour, shape = names[label].split("_")
                jitter = rng.integers(-25, 26, 3)
                rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))
                _draw(draw, shape, rgb, (x0, y0, x0 + w, y0 + w))
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": int(cat_ids[label]),
                        "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(w, 2)],
                        "area": round(w * w, 2),
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
            file_name = f"{split}_{image_id:012d}.jpg"
            img.save(tmp / split / file_name, quality=92)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        doc = {
            "info": {"description": "cml synthetic multi-label dataset", "seed": seed},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    if root.exists():  # another process finished first
        shutil.rmtree(tmp)
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)


def dataset_folder(data_cfg) -> Path:
    s = data_cfg.synthetic
    key = f"v{FORMAT_VERSION}-{s.num_classes}-{s.train_images}-{s.test_images}-{s.image_size}-{s.seed}"
    name = f"synthetic-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    base = (
        Path(data_cfg.root).expanduser()
        if data_cfg.root
        else Path(os.environ.get("CML_CACHE", "~/.cache/cml")).expanduser()
    )
    return base / name


@dataclass
class SyntheticOptions:
    num_classes: int = option(24, low=4, high=24, help="how many of the 24 named classes to use")
    train_images: int = option(1500, low=8, high=1_000_000)
    test_images: int = option(500, low=8, high=1_000_000)
    image_size: int = option(64, low=16, high=512, help="size of the generated images on disk")
    seed: int = option(0, low=0, high=SEED_MAX, help="the dataset's own seed, independent of the run's seed")


def load(data_cfg) -> MultiLabelData:
    s = data_cfg.synthetic
    root = dataset_folder(data_cfg)
    if not (root / "annotations" / "instances_val.json").is_file():
        print(f"generating the synthetic dataset into {root} ...", flush=True)
        generate(root, s.num_classes, s.train_images, s.test_images, s.image_size, s.seed)
    layout = "ROOT/{train,val}/*.jpg and ROOT/annotations/instances_{train,val}.json"
    return load_coco_folder(
        root,
        ("train", "val"),
        ("instances_train.json", "instances_val.json"),
        "ignore",
        data_cfg.cache_dir,
        "synthetic",
        layout,
    )


DECLARATION = Dataset(build=load, options=SyntheticOptions, needs_root=False, help="generated shapes, no download")
