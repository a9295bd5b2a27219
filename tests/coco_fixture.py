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
        doc = {
            "images": [],
            "annotations": [],
            "categories": [{"id": cid, "name": name, "supercategory": "x"} for cid, name in categories],
        }
        for image_id, anns in images.items():
            file_name = f"COCO_{split}_{image_id:012d}.jpg"
            doc["images"].append({"id": image_id, "file_name": file_name, "width": 8, "height": 8})
            if file_name not in missing:
                Image.new("RGB", (8, 8), (image_id * 7 % 255, 40, 90)).save(root / split / file_name)
            for category_id, crowd in anns:
                doc["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": category_id,
                        "iscrowd": crowd,
                        "bbox": [0, 0, 4, 4],
                        "area": 16,
                    }
                )
                ann_id += 1
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


# The 80 MS-COCO 2014 categories with their real (non-contiguous) ids.
COCO_CATEGORIES = [
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
]
