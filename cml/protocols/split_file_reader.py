"""Steps from published split files: the PRS protocol (Kim et al., ECCV 2020: COCOseq, NUS-WIDEseq).

    SPLIT_DIR/multihot_map.json              {"class name": index, ...}: the classes used
    SPLIT_DIR/train_task{k}_id_<name>.json   a JSON list of image ids, for tasks k = 0, 1, ...
    SPLIT_DIR/test_task{k}_id_<name>.json
The id lists may also sit in SPLIT_DIR/ids/, as in the PRS release.

- Image ids are the dataset's (COCO image ids; NUS-WIDE image-list line numbers, as in PRS's
  files); ints and strings both match. An id is looked up in the dataset's own split, then, where
  ids are unique across splits (COCO), in the other one (PRS draws on COCO train2014 and val2014
  alike); NUS-WIDE's line numbers repeat across splits, so there only the own split counts. Ids not in the
  dataset (e.g. missing image files) are counted in
  `skipped` (`split_train_ids_not_found`, `split_test_ids_not_found`); a task left with no
  training or no test image is an error. The returned data holds the listed images only.
- Classes of a task: the map's classes positive in its training images and not claimed by an
  earlier task in the run order (`scenario.task_order`), by map index. PRS's files define tasks
  by their images, not by classes; in COCOseq each task's images carry only its own classes, so
  this gives back the paper's tasks. Map classes no task claims are dropped
  (`split_classes_unused`). Columns are re-ordered so that the tasks are consecutive blocks.
- Training set of step t: the images of the task's train file (not every image with one of its
  classes), with the labels of the step's classes (partial) or of all seen classes (full).
- Test set after step t: the test images of the first t+1 tasks run, labels of the seen classes.
  Each step records which of them belong to which task (`Step.test_tasks`, task = file index).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from cml.core.errors import UserError
from cml.core.hints import did_you_mean
from cml.core.safeyaml import load_json
from cml.datasets._types import MultiLabelData, Split
from cml.protocols.split import Step, make_step, reorder

LAYOUT = (
    "SPLIT_DIR/multihot_map.json and SPLIT_DIR/{train,test}_task{k}_id_<name>.json "
    "(or SPLIT_DIR/ids/...), from the PRS authors' code release"
)
TRAIN_FILE = re.compile(r"train_task(\d+)_id_.+\.json")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_json(path: Path):
    return load_json(path, "a JSON file of the layout " + LAYOUT, LAYOUT)


def read_class_map(path: Path, class_names: list[str]) -> list[int]:
    """Dataset columns of the map's classes, by map index."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object mapping class name to index")
    owner: dict[int, str] = {}
    for name, index in doc.items():
        if not is_int(index) or not 0 <= index < len(doc) or index in owner:
            why = (
                f"index {index!r} is not an integer"
                if not is_int(index)
                else f"index {index} is also that of {owner[index]!r}"
                if index in owner
                else f"index {index} is out of range"
            )
            raise UserError(f"{path}: entry {name!r}: {why}; expected the indices 0..{len(doc) - 1}, each once")
        owner[index] = name
    column = {name: j for j, name in enumerate(class_names)}
    for name in doc:
        if name not in column:
            raise UserError(f"{path}: class {name!r} is not a class of the dataset{did_you_mean(name, class_names)}")
    return [column[name] for name in sorted(doc, key=doc.get)]


def task_files(folder: Path) -> list[tuple[Path, Path]]:
    """(train file, test file) of tasks 0 .. K-1."""
    ids_dir = folder / "ids" if (folder / "ids").is_dir() else folder
    found: dict[int, list[Path]] = {}
    for path in sorted(ids_dir.glob("train_task*_id_*.json")):
        match = TRAIN_FILE.fullmatch(path.name)
        if match:
            found.setdefault(int(match[1]), []).append(path)
    if not found:
        raise UserError(f"{ids_dir}: no train_task{{k}}_id_*.json file; expected {LAYOUT}")
    pairs = []
    for k in range(max(found) + 1):
        if k not in found:
            raise UserError(f"{ids_dir}: no train_task{k}_id_*.json, but tasks up to {max(found)} exist")
        if len(found[k]) > 1:
            raise UserError(f"{ids_dir}: several files for task {k}: {', '.join(p.name for p in found[k])}")
        train = found[k][0]
        test = train.with_name("test" + train.name[len("train") :])
        if not test.is_file():
            raise UserError(f"{test}: not found; each train_task{{k}}_id_*.json needs its test file")
        pairs.append((train, test))
    return pairs


def read_ids(path: Path) -> list[str]:
    """The file's ids as keys: `str`, with NUS-WIDE's Windows separators made `/`."""
    doc = read_json(path)
    if not isinstance(doc, list):
        raise UserError(
            f"{path}: expected a JSON list of image ids (integers or strings), got a JSON {type(doc).__name__}"
        )
    for k, value in enumerate(doc):
        if not (is_int(value) or isinstance(value, str)):
            raise UserError(
                f"{path}: entry {k}: {json.dumps(value)} is not an image id; expected a JSON list "
                "of image ids (integers or strings)"
            )
    return [str(i).replace("\\", "/") for i in doc]


def find_rows(path: Path, own: dict[str, int], other: dict[str, int], example) -> tuple[set[int], int]:
    """Pooled rows of the file's images (own split first), and how many of its ids are not found."""
    ids = list(dict.fromkeys(read_ids(path)))  # unique, in file order
    rows = {own[key] if key in own else other[key] for key in ids if key in own or key in other}
    if not rows:
        first = f" (e.g. {ids[0]!r}; the dataset's ids look like {example!r})" if ids else ""
        raise UserError(f"{path}: none of its {len(ids)} ids is an image of the dataset{first}")
    return rows, len(ids) - len(rows)


def split_file_steps(
    data: MultiLabelData, split_dir: str, task_order: list[int], labels: str = "partial"
) -> tuple[MultiLabelData, list[Step]]:
    folder = Path(split_dir).expanduser()
    map_columns = read_class_map(folder / "multihot_map.json", data.class_names)
    files = task_files(folder)
    order = list(task_order) or list(range(len(files)))
    if sorted(order) != list(range(len(files))):
        raise UserError(
            f"scenario.task_order: expected an order of the tasks 0..{len(files) - 1} "
            f"found in {folder}, got {list(task_order)}"
        )

    # Train and test images of the dataset in one pool, rows looked up by id key.
    n_train = len(data.train.ids)
    select = None
    if data.train.select is not None or data.test.select is not None:
        select = np.concatenate([data.train.selection, data.test.selection])
    pool = Split(
        data.train.paths + data.test.paths,
        np.concatenate([data.train.labels, data.test.labels]),
        data.train.ids + data.test.ids,
        select,
    )
    train_index = {str(i): row for row, i in enumerate(data.train.ids)}
    test_index = {str(i): row for row, i in enumerate(data.test.ids, n_train)}
    example = pool.ids[0] if pool.ids else None
    skipped = dict(data.skipped)

    def lookup(path: Path, part: str, own: dict[str, int], other: dict[str, int]) -> set[int]:
        rows, missing = find_rows(path, own, other, example)
        if missing:
            skipped[f"split_{part}_ids_not_found"] = skipped.get(f"split_{part}_ids_not_found", 0) + missing
        return rows

    unique = train_index.keys().isdisjoint(test_index)
    task_train = [lookup(train, "train", train_index, test_index if unique else {}) for train, _ in files]
    task_test = [lookup(test, "test", test_index, train_index if unique else {}) for _, test in files]

    # Each task claims the map's classes in its training images that no earlier task claimed.
    blocks, claimed = [], set()
    for task in order:
        positive = pool.labels[sorted(task_train[task])].any(0)
        block = [c for c in map_columns if positive[c] and c not in claimed]
        if not block:
            raise UserError(
                f"{files[task][0]}: its images hold no class of multihot_map.json that an "
                "earlier task (in scenario.task_order) has not claimed"
            )
        blocks.append(block)
        claimed.update(block)
    if len(claimed) < len(map_columns):
        skipped["split_classes_unused"] = len(map_columns) - len(claimed)

    train_rows = np.array(sorted(set().union(*task_train)))
    test_rows = np.array(sorted(set().union(*task_test)))
    ignore = None
    if data.test_ignore is not None:
        ignore = np.concatenate([np.zeros_like(data.train.labels), data.test_ignore])[test_rows]
    listed = MultiLabelData(
        data.name, data.class_names, pool.subset(train_rows), pool.subset(test_rows), skipped, ignore
    )
    data = reorder(listed, [c for block in blocks for c in block])

    steps, start, seen_test = [], 0, set()
    for t, (task, block) in enumerate(zip(order, blocks)):
        seen_test |= task_test[task]
        rows = np.searchsorted(train_rows, sorted(task_train[task]))
        test_at = np.searchsorted(test_rows, sorted(seen_test))
        step = make_step(
            data.train.labels, data.test.labels, rows, test_at, start, start + len(block), labels, data.test_ignore
        )
        step.task = task
        step.test_tasks = [
            (k, np.searchsorted(test_at, np.searchsorted(test_rows, sorted(task_test[k])))) for k in order[: t + 1]
        ]
        steps.append(step)
        start += len(block)
    return data, steps
