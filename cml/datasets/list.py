"""Your own images, listed in files: `data.list.classes`, `data.list.train`, `data.list.test`.

    classes.txt     one class name per line; the line order is the column order
    train.csv       path,labels                      (header line required)
                    img/a.jpg,cat|dog                (labels separated by |)
                    img/b.jpg,                       (no label: skipped, counted)
    train.jsonl     {"path": "img/a.jpg", "labels": ["cat", "dog"]}   (one object per line)

The format follows the extension (.csv or .jsonl). Relative image paths are taken from
`data.root` when it is set, else from the folder of the list file; the image id is the path as
written. Blank lines are ignored, and so is a byte-order mark at the start of a file (Excel);
files must be UTF-8 text. A label that is not in the classes file is an error. Rows naming the
same image file (after resolving the path, symbolic links included) are merged into one row with
the union of their labels, and counted (`<split>_duplicate_rows`: the rows merged away). Then
images with no label are skipped (`<split>_unlabeled`), then images whose file is absent
(`<split>_missing_files`). Paths outside `data.root` (absolute, or leaving it through `..`) are
read where they are, with one note saying how many; nothing is written there (the image-check
cache goes to `data.cache_dir`, `data.root` or CML_CACHE, see `cml.datasets.imagefiles.derived_folder`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cml.core.errors import UserError
from cml.core.hints import did_you_mean
from cml.core.registry import Dataset
from cml.core.safeyaml import decode
from cml.core.schema import option
from cml.datasets._types import MultiLabelData, Split

FORMATS = 'a .csv with the header path,labels or a .jsonl of {"path": ..., "labels": [...]} objects'


def required_file(value: str | None, key: str, what: str) -> Path:
    if not value:
        raise UserError(f"{key}: required for data.dataset 'list'; expected {what}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"{key}: file not found: {path}; expected {what}")
    return path


def read_text(path: Path, expected: str) -> str:
    try:
        return decode(path.read_bytes(), str(path), expected)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def read_classes(path: Path) -> list[str]:
    names: list[str] = []
    for n, line in enumerate(read_text(path, "one class name per line").splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise UserError(f"{path}: line {n}: class {name!r} listed twice; expected each name once")
        names.append(name)
    if not names:
        raise UserError(f"{path}: no class names; expected one class name per line")
    return names


def read_csv(path: Path) -> list[tuple[int, str, list[str]]]:
    with io.StringIO(read_text(path, "a CSV list"), newline="") as fh:
        reader = csv.reader(fh)
        header = [cell.strip() for cell in next(reader, [])]
        if header != ["path", "labels"]:
            raise UserError(f"{path}: line 1: header {','.join(header)!r}; expected 'path,labels'")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != 2 or not row[0].strip():
                raise UserError(
                    f"{path}: line {reader.line_num}: {','.join(row)!r}; "
                    "expected path,labels with labels separated by | (e.g. img/a.jpg,cat|dog)"
                )
            labels = [name.strip() for name in row[1].split("|") if name.strip()]
            rows.append((reader.line_num, row[0].strip(), labels))
    return rows


def read_jsonl(path: Path) -> list[tuple[int, str, list[str]]]:
    rows = []
    for n, line in enumerate(read_text(path, "a JSONL list").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path}: line {n}: not valid JSON ({err.msg}); expected one object per line "
                'like {"path": "img/a.jpg", "labels": ["cat"]}'
            ) from None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("path"), str)
            and item["path"]
            and isinstance(item.get("labels"), list)
            and all(isinstance(x, str) for x in item["labels"])
        ):
            raise UserError(
                f'{path}: line {n}: expected an object with a non-empty string "path" and '
                'a list of strings "labels", like {"path": "img/a.jpg", "labels": ["cat"]}'
            )
        rows.append((n, item["path"], item["labels"]))
    return rows


def read_split(path: Path, key: str, base: Path, classes: list[str], classes_path: Path):
    """(split, {"unlabeled": n, "missing_files": n, "duplicate_rows": n}) from one list file."""
    readers = {".csv": read_csv, ".jsonl": read_jsonl}
    if path.suffix.lower() not in readers:
        raise UserError(f"{key}: {path}: unknown extension {path.suffix!r}; expected {FORMATS}")
    column = {name: j for j, name in enumerate(classes)}
    rows: dict[str, tuple[str, set[int]]] = {}  # normalised path -> (path as written, label columns)
    real: dict[str, str] = {}  # the file itself (links resolved) -> its row's normalised path
    counts = {"unlabeled": 0, "missing_files": 0, "duplicate_rows": 0}
    outside = []
    for n, image, names in readers[path.suffix.lower()](path):
        for name in names:
            if name not in column:
                hint = did_you_mean(name, classes)
                raise UserError(f"{path}: line {n}: unknown class {name!r}{hint}; expected a name from {classes_path}")
        full = os.path.normpath(os.path.join(base, image))
        full = real.setdefault(os.path.realpath(full), full)
        if full in rows:
            counts["duplicate_rows"] += 1
        elif not full.startswith(os.path.join(base, "")):
            outside.append(image)
        rows.setdefault(full, (image, set()))[1].update(column[name] for name in names)
    paths, ids, rows_labels = [], [], []
    for full, (image, columns) in rows.items():
        if not columns:
            counts["unlabeled"] += 1
        elif not os.path.exists(full):
            counts["missing_files"] += 1
        else:
            paths.append(full)
            ids.append(image)
            rows_labels.append(sorted(columns))
    if counts["missing_files"] and not paths:
        raise UserError(f"{key}: none of the {counts['missing_files']} labelled images of {path} exists under {base}")
    labels = np.zeros((len(paths), len(classes)), dtype=np.uint8)
    for i, cols in enumerate(rows_labels):
        labels[i, cols] = 1
    if outside:
        counts["outside"] = outside
    return Split(paths, labels, ids), counts


@dataclass
class ListOptions:
    train: Optional[str] = option(None, path=True, help="CSV or JSONL of path,labels for training")
    test: Optional[str] = option(None, path=True, help="CSV or JSONL of path,labels for testing")
    classes: Optional[str] = option(None, path=True, help="text file, one class name per line")


def load(data_cfg) -> MultiLabelData:
    cfg = data_cfg.list
    classes_path = required_file(cfg.classes, "data.list.classes", "a text file with one class name per line")
    classes = read_classes(classes_path)
    splits, skipped = [], {}
    for part in ("train", "test"):
        key = f"data.list.{part}"
        path = required_file(getattr(cfg, part), key, FORMATS)
        base = Path(data_cfg.root).expanduser() if data_cfg.root else path.parent
        split, counts = read_split(path, key, Path(os.path.normpath(base.absolute())), classes, classes_path)
        outside = counts.pop("outside", [])
        if outside and data_cfg.root:
            print(
                f"{key}: {len(outside)} image{'s' if len(outside) > 1 else ''} outside data.root {base} "
                f"(e.g. {outside[0]}), read from there",
                flush=True,
            )
        splits.append(split)
        skipped.update({f"{part}_{what}": count for what, count in counts.items()})
    skipped = {key: count for key, count in skipped.items() if count}
    return MultiLabelData("list", classes, splits[0], splits[1], skipped)


DECLARATION = Dataset(build=load, options=ListOptions, needs_root=False, help="CSV or JSONL lists of path,labels")
