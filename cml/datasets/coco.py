"""MS-COCO 2014 in its official layout, and any folder in the COCO instances format.

    ROOT/train2014/*.jpg   ROOT/val2014/*.jpg   ROOT/annotations/instances_{train,val}2014.json

Categories keep COCO's (non-contiguous) ids internally; columns follow ascending category id.
Crowd annotations (`iscrowd: 1`, `data.coco.crowd`):
- `ignore` (default): neither a label nor a reason to select the image;
- `positive`: a label like any other (PRS's COCOseq maker and MULTI-LANE's loader read every
  annotation);
- `krt`: as KRT's official loader, the image is selected for a step by any annotation of the
  step's classes, crowd included (pycocotools' `catToImgs`), but its labels come from the
  non-crowd annotations only (`getAnnIds(iscrowd=False)`), so a crowd-only image is in the step
  with no positive label.
Images with no label stay in the split (they belong to no step). Parsing the 450 MB train JSON
is slow, so the parsed matrices (non-crowd and crowd annotations apart, whatever the mode) and
the file list are cached, keyed by the JSON's name, size and mtime and the cache format; a damaged
cache file (truncated, emptied) is named in one warning and parsed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cml.core.errors import UserError
from cml.core.registry import Dataset
from cml.core.schema import option
from cml.datasets._cache import cache_folder
from cml.datasets._types import MultiLabelData, Split

LAYOUT = (
    "ROOT/train2014/, ROOT/val2014/ and ROOT/annotations/instances_{train,val}2014.json "
    "(MS-COCO 2014 from cocodataset.org: 2014 Train images, 2014 Val images, "
    "2014 Train/Val annotations)"
)


PARSE_FORMAT = 2  # in the cache key: bump when what a parse returns changes


def parse_instances(json_path: Path) -> tuple[list[int], list[str], list[int], list[str], np.ndarray, np.ndarray]:
    """(category ids, category names, image ids, file names, non-crowd, crowd) from one instances
    JSON; the last two are (images, categories) uint8 matrices of the annotations present."""
    try:
        with open(json_path, "rb") as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as err:
        raise UserError(f"{json_path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    except OSError as err:
        raise UserError(f"{json_path}: cannot read ({err.strerror})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise UserError(f"{json_path}: expected a COCO instances file with a '{key}' list")
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in categories]
    column = {cid: j for j, cid in enumerate(cat_ids)}
    image_ids = [int(im["id"]) for im in doc["images"]]
    files = [str(im["file_name"]) for im in doc["images"]]
    row = {iid: i for i, iid in enumerate(image_ids)}
    plain = np.zeros((len(image_ids), len(cat_ids)), dtype=np.uint8)
    crowd = np.zeros_like(plain)
    for k, ann in enumerate(doc["annotations"]):
        img, col = row.get(int(ann["image_id"])), column.get(int(ann["category_id"]))
        if img is None or col is None:
            what = f"image {ann['image_id']}" if img is None else f"category {ann['category_id']}"
            raise UserError(f"{json_path}: annotation #{k} (id {ann.get('id')}) refers to unknown {what}")
        (crowd if ann.get("iscrowd", 0) else plain)[img, col] = 1
    return cat_ids, [str(c["name"]) for c in categories], image_ids, files, plain, crowd


def labels_and_selection(plain: np.ndarray, crowd: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The label matrix and, where it differs, the selection matrix of a `data.coco.crowd` mode."""
    if mode == "positive":
        return plain | crowd, None
    if mode == "krt":
        return plain, plain | crowd
    return plain, None


def load_instances_cached(json_path: Path, cache: Path):
    stat = json_path.stat()
    key = f"{json_path.name}-{stat.st_size}-{stat.st_mtime_ns}-v{PARSE_FORMAT}"
    target = cache / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    parsed = _read_parsed(target) if target.is_file() else None
    if parsed is not None:
        return parsed
    parsed = parse_instances(json_path)
    cat_ids, names, image_ids, files, plain, crowd = parsed
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            cat_ids=np.array(cat_ids),
            names=np.array(names),
            image_ids=np.array(image_ids),
            files=np.array(files),
            plain=plain,
            crowd=crowd,
        )
        os.replace(tmp, target)
    except OSError:
        pass  # a read-only place: parse again next time
    return parsed


def _read_parsed(target: Path):
    """The parsed instances cached at `target`, or None when the file is damaged (warned): a
    truncated or emptied `.npz` (`BadZipFile`, `EOFError`) must not fail every later run and plan."""
    try:
        with np.load(target, allow_pickle=False) as z:
            return (
                z["cat_ids"].tolist(),
                z["names"].tolist(),
                z["image_ids"].tolist(),
                z["files"].tolist(),
                z["plain"],
                z["crowd"],
            )
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as err:
        warnings.warn(f"{target}: the parsed-labels cache file is damaged ({err}); parsing again", stacklevel=3)
        return None


def unique_names(names: list[str], cat_ids: list[int]) -> list[str]:
    """Category names, a name that several categories share followed by its id ("cup (id 47)"):
    results key classes by name (`per_class_ap`, class orders), and two must not become one."""
    shared = {n for n in names if names.count(n) > 1}
    return [f"{n} (id {i})" if n in shared else n for n, i in zip(names, cat_ids)]


def load_coco_folder(
    root: Path,
    split_dirs: tuple[str, str],
    json_names: tuple[str, str],
    crowd: str,
    cache_dir: str | None,
    name: str,
    layout: str,
) -> MultiLabelData:
    if not root.is_dir():
        raise UserError(f"data.root: {root} does not exist; expected {layout}")
    jsons = [root / "annotations" / j for j in json_names]
    folders = [root / d for d in split_dirs]
    for path in jsons + folders:
        if not path.exists():
            raise UserError(f"{name}: {path} not found; expected {layout}")
    cache = cache_folder(root, cache_dir)
    splits, skipped, class_names = [], {}, None
    for part, json_path, folder in zip(("train", "test"), jsons, folders):
        cat_ids, names, image_ids, files, plain, crowd_anns = load_instances_cached(json_path, cache)
        labels, select = labels_and_selection(plain, crowd_anns, crowd)
        if class_names is None:
            class_names, first_ids = unique_names(names, cat_ids), cat_ids
        elif cat_ids != first_ids:
            raise UserError(f"{json_path}: its categories differ from those of {jsons[0]}")
        # one directory listing instead of a stat per image, and str paths (pathlib costs seconds at 120k)
        listed, prefix = set(os.listdir(folder)), os.path.join(folder, "")
        present = np.array([f in listed if "/" not in f else os.path.exists(prefix + f) for f in files], dtype=bool)
        if not present.all():
            skipped[f"{part}_missing_files"] = int((~present).sum())
        rows = np.flatnonzero(present)
        splits.append(
            Split(
                [prefix + files[i] for i in rows],
                labels[rows],
                [image_ids[i] for i in rows],
                None if select is None else select[rows],
            )
        )
    return MultiLabelData(name, class_names, splits[0], splits[1], skipped)


@dataclass
class CocoOptions:
    crowd: Literal["ignore", "positive", "krt"] = option(
        "ignore",
        help="iscrowd=1 annotations: ignored; a label (PRS's COCOseq, MULTI-LANE); krt: they select "
        "the image for a step but are not labels (KRT's loader)",
    )


def load(data_cfg) -> MultiLabelData:
    return load_coco_folder(
        Path(data_cfg.root).expanduser(),
        ("train2014", "val2014"),
        ("instances_train2014.json", "instances_val2014.json"),
        data_cfg.coco.crowd,
        data_cfg.cache_dir,
        "coco",
        LAYOUT,
    )


DECLARATION = Dataset(build=load, options=CocoOptions, needs_root=True, help="MS-COCO 2014, official layout")
