"""PASCAL VOC 2007 classification: trainval for training, test for testing.

    ROOT/VOCdevkit/VOC2007/ImageSets/Main/<class>_trainval.txt   "<image id> <flag>" per line
    ROOT/VOCdevkit/VOC2007/ImageSets/Main/<class>_test.txt
    ROOT/VOCdevkit/VOC2007/JPEGImages/<image id>.jpg

ROOT may also be VOCdevkit/ or VOCdevkit/VOC2007/ itself. Flag 1: the class is present, -1:
absent, 0: only "difficult" instances of it, handled by `data.voc.difficult`: "negative" (label
0, the common choice), "positive" (label 1), or "ignore" (label 0, and for test images marked in
`test_ignore` so that the pair is left out of that class's AP). Columns follow the 20 standard
class names, which are alphabetical. Every class file of a split must list the same images in
the same order. Images whose JPEG is absent are skipped and counted (`<split>_missing_files`);
an image whose objects are all difficult stays, with no label under "negative" (like COCO's
unlabelled images, it belongs to no step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cml.core.errors import UserError
from cml.core.registry import Dataset
from cml.core.schema import option
from cml.datasets._types import MultiLabelData, Split

CLASSES = [
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
LAYOUT = (
    "ROOT/VOCdevkit/VOC2007/ImageSets/Main/<class>_{trainval,test}.txt and "
    "ROOT/VOCdevkit/VOC2007/JPEGImages/ (PASCAL VOC 2007 from the PASCAL VOC site: "
    "VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar, both extracted into ROOT)"
)


def find_devkit(root: Path) -> Path:
    for folder in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (folder / "ImageSets" / "Main").is_dir():
            return folder
    raise UserError(f"data.root: no VOC 2007 under {root}; expected {LAYOUT}")


def read_flags(main: Path, part: str) -> tuple[list[str], np.ndarray]:
    """Image ids and their (N, 20) matrix of 1 / 0 / -1 flags from the 20 `<class>_<part>.txt`."""
    ids: list[str] | None = None
    columns = []
    for name in CLASSES:
        path = main / f"{name}_{part}.txt"
        if not path.is_file():
            raise UserError(f"voc: {path} not found; expected {LAYOUT}")
        file_ids, flags = [], []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("1", "0", "-1"):
                raise UserError(f"{path}: line {n}: {line.strip()!r}; expected '<image id> <1 | 0 | -1>'")
            k = len(file_ids)
            if ids is not None and (k == len(ids) or fields[0] != ids[k]):
                other = f"image {ids[k]}" if k < len(ids) else "no more images"
                raise UserError(
                    f"{path}: line {n}: image {fields[0]} where {CLASSES[0]}_{part}.txt has "
                    f"{other}; expected the same images in the same order in every class file"
                )
            file_ids.append(fields[0])
            flags.append(int(fields[1]))
        if ids is None:
            ids = file_ids
        elif len(file_ids) < len(ids):
            raise UserError(
                f"{path}: {len(file_ids)} images where {CLASSES[0]}_{part}.txt has {len(ids)}; "
                "expected the same images in the same order in every class file"
            )
        columns.append(np.array(flags, dtype=np.int8))
    return ids, np.stack(columns, axis=1)


@dataclass
class VocOptions:
    difficult: Literal["negative", "positive", "ignore"] = option(
        "negative", help="label 0 (difficult): not a label, a label, or left out of that class's AP"
    )


def load(data_cfg) -> MultiLabelData:
    root = Path(data_cfg.root).expanduser().absolute()
    if not root.is_dir():
        raise UserError(f"data.root: {root} does not exist; expected {LAYOUT}")
    devkit = find_devkit(root)
    difficult = data_cfg.voc.difficult
    splits, skipped, test_ignore = [], {}, None
    for part, file_part in (("train", "trainval"), ("test", "test")):
        ids, flags = read_flags(devkit / "ImageSets" / "Main", file_part)
        labels = ((flags == 1) | ((flags == 0) & (difficult == "positive"))).astype(np.uint8)
        files = [os.path.join(devkit, "JPEGImages", f"{image_id}.jpg") for image_id in ids]
        rows = np.array([i for i, file in enumerate(files) if os.path.exists(file)], dtype=np.int64)
        if ids and not rows.size:
            raise UserError(
                f"voc: none of the {len(ids)} images of {CLASSES[0]}_{file_part}.txt is in "
                f"{devkit / 'JPEGImages'}; expected {LAYOUT}"
            )
        if len(rows) < len(ids):
            skipped[f"{part}_missing_files"] = len(ids) - len(rows)
        if part == "test" and difficult == "ignore":
            test_ignore = (flags[rows] == 0).astype(np.uint8)
        splits.append(Split([files[i] for i in rows], labels[rows], [ids[i] for i in rows]))
    return MultiLabelData("voc", list(CLASSES), splits[0], splits[1], skipped, test_ignore)


DECLARATION = Dataset(build=load, options=VocOptions, needs_root=True, help="PASCAL VOC 2007 devkit")
