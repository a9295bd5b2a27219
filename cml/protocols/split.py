"""Which classes, images and labels each step gets: the multi-label class-incremental protocol.

Plain numpy, no torch: the rules are checked by hand in the tests.

- Class order: alphabetical by name (KRT protocol), a seeded shuffle, or an explicit list (which
  may name a subset of the classes). Columns are re-ordered once, so that class index == position
  in the order and the classes of step t are one contiguous block.
- `B{base}-C{increment}`: `base` classes first, then `increment` per step (`base: 0` = equal
  steps); a last step with fewer classes than `increment` is kept.
- Training set of step t: every training image selected by at least one class of step t; labels
  of classes outside step t are 0 ("partial", the standard protocol), or those of all classes
  seen so far ("full"), or of every class ("all", PRS's multi-hot over the whole class map).
- Test set after step t: every test image selected by any seen class, labels of the seen classes
  (of every class under "all").
An image is selected by the classes it holds (its labels) unless the dataset gives a separate
selection matrix (`Split.select`: KRT's COCO loader selects by crowd annotations too), so a
selected image may carry no positive label. Each step also lists, for every task run so far, the
positions of that task's test images in its test set (`test_tasks`), for per-task evaluation.
Targets are float32: 1 positive, 0 negative, -1 left out of the loss and the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cml.core.errors import UserError
from cml.core.hints import did_you_mean
from cml.datasets._types import MultiLabelData

IGNORE = -1.0


@dataclass
class Step:
    classes: list[int]  # indices in the ordered class list
    n_seen: int  # classes seen once this step is done (they are 0 .. n_seen-1)
    train_rows: np.ndarray  # rows of data.train
    train_targets: np.ndarray  # (n, C) float32
    test_rows: np.ndarray
    test_targets: np.ndarray
    task: int = 0  # the task's own name: its split-file index (PRS), else the step index
    # per task run so far: (task, positions in test_rows of that task's test images)
    test_tasks: list[tuple[int, np.ndarray]] = field(default_factory=list)


def class_order(names: list[str], order: str | list[str], seed: int) -> list[int]:
    if order == "alphabetical":
        return sorted(range(len(names)), key=lambda i: names[i])
    if order == "shuffle":
        return np.random.default_rng(seed).permutation(len(names)).tolist()
    index = {n: i for i, n in enumerate(names)}
    for name in order:
        if name not in index:
            raise UserError(f"scenario.order: unknown class {name!r}{did_you_mean(name, names)}")
    if len(set(order)) != len(order):
        raise UserError("scenario.order: a class is listed twice")
    return [index[n] for n in order]


def step_sizes(n_classes: int, base: int, increment: int) -> list[int]:
    first = base or increment
    if first > n_classes:
        raise UserError(f"scenario.base/increment: the first step needs {first} classes, the dataset has {n_classes}")
    sizes = [first]
    while sum(sizes) < n_classes:
        sizes.append(min(increment, n_classes - sum(sizes)))
    return sizes


def make_step(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    start: int,
    n_seen: int,
    labels: str = "partial",
    test_ignore: np.ndarray | None = None,
) -> Step:
    """A step of classes [start, n_seen) over the given rows, with the targets the rules above set."""
    n_classes = train_labels.shape[1]
    keep = np.zeros(n_classes, dtype=np.float32)
    keep[start if labels == "partial" else 0 : n_classes if labels == "all" else n_seen] = 1
    train_targets = train_labels[train_rows].astype(np.float32) * keep
    test_targets = test_labels[test_rows].astype(np.float32)
    if test_ignore is not None:
        test_targets[test_ignore[test_rows].astype(bool)] = IGNORE
    if labels != "all":
        test_targets[:, n_seen:] = 0
    return Step(list(range(start, n_seen)), n_seen, train_rows, train_targets, test_rows, test_targets)


def make_steps(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    sizes: list[int],
    labels: str = "partial",
    test_ignore: np.ndarray | None = None,
    train_select: np.ndarray | None = None,
    test_select: np.ndarray | None = None,
) -> list[Step]:
    """Steps over label (and selection) matrices whose columns are already in class order."""
    train_select = train_labels if train_select is None else train_select
    test_select = test_labels if test_select is None else test_select
    steps, start, blocks = [], 0, []
    for t, size in enumerate(sizes):
        n_seen = start + size
        blocks.append(slice(start, n_seen))
        train_rows = np.flatnonzero(train_select[:, start:n_seen].any(1))
        test_rows = np.flatnonzero(test_select[:, :n_seen].any(1))
        step = make_step(train_labels, test_labels, train_rows, test_rows, start, n_seen, labels, test_ignore)
        step.task = t
        selected = test_select[test_rows]
        step.test_tasks = [(j, np.flatnonzero(selected[:, block].any(1))) for j, block in enumerate(blocks)]
        steps.append(step)
        start = n_seen
    return steps


def joint_rows_and_targets(
    train_labels: np.ndarray, n_seen: int, train_select: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Upper bound: every training image selected by any seen class, with the labels of all seen classes."""
    select = train_labels if train_select is None else train_select
    rows = np.flatnonzero(select[:, :n_seen].any(1))
    targets = train_labels[rows].astype(np.float32)
    targets[:, n_seen:] = 0
    return rows, targets


def reorder(data: MultiLabelData, order: list[int]) -> MultiLabelData:
    """The same data with class columns in `order` (classes not in `order` dropped)."""
    ignore = data.test_ignore[:, order] if data.test_ignore is not None else None
    return MultiLabelData(
        data.name,
        [data.class_names[i] for i in order],
        data.train.columns(order),
        data.test.columns(order),
        data.skipped,
        ignore,
    )


def ordered_steps(cfg, data, sizes_of):
    """The data in class order and its steps, of the sizes `sizes_of(n_classes)`."""
    s = cfg.scenario
    data = reorder(data, class_order(data.class_names, s.order, cfg.seed))
    steps = make_steps(
        data.train.labels,
        data.test.labels,
        sizes_of(len(data.class_names)),
        s.labels,
        data.test_ignore,
        data.train.select,
        data.test.select,
    )
    return data, steps
