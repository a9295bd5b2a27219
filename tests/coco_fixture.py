"""Writes a small folder in the real MS-COCO 2014 layout, for loader and protocol tests."""

import json
from pathlib import Path

from PIL import Image


def write_coco(root: Path, splits: dict, categories: list[tuple[int, str]], missing: tuple = ()) -> Path:
    """`splits`: {"train2014": {image_id: [(category_id, iscrowd), ...]}, "val2014": {...}}.
    Image files named in `missing` are left out of the folder (but stay in the JSON)."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, images in splits.items():
        (root / split).mkdir(exist_ok=True)
        doc = {"images": [], "annotations": [],
               "categories": [{"id": cid, "name": name, "supercategory": "x"} for cid, name in categories]}
        for image_id, anns in images.items():
            file_name = f"COCO_{split}_{image_id:012d}.jpg"
            doc["images"].append({"id": image_id, "file_name": file_name, "width": 8, "height": 8})
            if file_name not in missing:
                Image.new("RGB", (8, 8), (image_id * 7 % 255, 40, 90)).save(root / split / file_name)
            for category_id, crowd in anns:
                doc["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": category_id,
                                           "iscrowd": crowd, "bbox": [0, 0, 4, 4], "area": 16})
                ann_id += 1
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root
