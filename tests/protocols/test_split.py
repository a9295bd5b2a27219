"""Scenario splits against expectations worked out by hand on a small annotation matrix."""

import numpy as np
import pytest

from cml.core.errors import UserError
from cml.protocols.split import IGNORE, class_order, joint_rows_and_targets, make_steps, step_sizes

# classes in alphabetical order already: a b c d e f
TRAIN = np.array(
    [
        [1, 0, 0, 0, 0, 0],  # 0: a
        [0, 1, 1, 0, 0, 0],  # 1: b c
        [1, 0, 0, 1, 0, 0],  # 2: a d
        [0, 0, 0, 0, 1, 1],  # 3: e f
        [0, 0, 0, 0, 0, 0],  # 4: no label
        [0, 0, 1, 0, 0, 1],  # 5: c f
    ],
    dtype=np.uint8,
)
TEST = np.array(
    [
        [0, 0, 0, 1, 0, 0],  # 0: d
        [1, 1, 0, 0, 0, 0],  # 1: a b
        [0, 0, 0, 0, 0, 1],  # 2: f
        [0, 0, 0, 0, 0, 0],  # 3: none
    ],
    dtype=np.uint8,
)


def test_step_sizes():
    assert step_sizes(80, 40, 10) == [40, 10, 10, 10, 10]
    assert step_sizes(80, 0, 10) == [10] * 8
    assert step_sizes(20, 0, 4) == [4] * 5 and step_sizes(20, 10, 2) == [10, 2, 2, 2, 2, 2]
    assert step_sizes(7, 3, 3) == [3, 3, 1]
    with pytest.raises(UserError, match="first step needs 9 classes"):
        step_sizes(8, 9, 1)


def test_class_order():
    names = ["zebra", "apple", "mouse"]
    assert class_order(names, "alphabetical", 0) == [1, 2, 0]
    assert class_order(names, ["mouse", "zebra"], 0) == [2, 0]
    shuffled = class_order(names, "shuffle", 3)
    assert sorted(shuffled) == [0, 1, 2] and shuffled == class_order(names, "shuffle", 3)
    with pytest.raises(UserError, match="unknown class 'zebr'; did you mean 'zebra'"):
        class_order(names, ["zebr"], 0)


def test_partial_labels_b2_c2():
    steps = make_steps(TRAIN, TEST, [2, 2, 2], "partial")
    # step 0 (a, b): images 0, 1, 2; only a and b kept
    assert steps[0].classes == [0, 1] and steps[0].train_rows.tolist() == [0, 1, 2]
    assert steps[0].train_targets.tolist() == [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    # step 1 (c, d): images 1 (c), 2 (d), 5 (c); a, b, f zeroed
    assert steps[1].train_rows.tolist() == [1, 2, 5]
    assert steps[1].train_targets.tolist() == [[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]]
    # step 2 (e, f): images 3, 5
    assert steps[2].train_rows.tolist() == [3, 5]
    assert steps[2].train_targets.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]]
    # test after step 0: image 1 only (a b); after step 1 adds image 0 (d); after step 2 image 2 (f)
    assert [s.test_rows.tolist() for s in steps] == [[1], [0, 1], [0, 1, 2]]
    assert steps[0].test_targets.tolist() == [[1, 1, 0, 0, 0, 0]]
    assert [s.n_seen for s in steps] == [2, 4, 6]


def test_full_labels_keep_seen_classes():
    steps = make_steps(TRAIN, TEST, [2, 2, 2], "full")
    assert steps[1].train_targets.tolist() == [[0, 1, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]]


def test_test_targets_hide_unseen_classes_and_carry_ignore():
    ignore = np.zeros_like(TEST)
    ignore[1, 1] = 1
    steps = make_steps(TRAIN, TEST, [1, 5], "partial", ignore)
    # after step 0 (a): image 1 (a b) scored on a only; b is unseen, so 0 even though ignored
    assert steps[0].test_targets.tolist() == [[1, 0, 0, 0, 0, 0]]
    assert steps[1].test_targets[1].tolist() == [1, IGNORE, 0, 0, 0, 0]


def test_joint_uses_all_seen_labels():
    rows, targets = joint_rows_and_targets(TRAIN, 4)
    assert rows.tolist() == [0, 1, 2, 5]
    assert targets.tolist() == [[1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]]


def test_all_labels_keep_every_class():
    steps = make_steps(TRAIN, TEST, [2, 2, 2], "all")
    assert steps[0].train_targets.tolist() == TRAIN[[0, 1, 2]].tolist()  # c and d are not seen yet
    assert steps[0].test_targets.tolist() == [[1, 1, 0, 0, 0, 0]]
    assert steps[1].test_targets.tolist() == TEST[[0, 1]].tolist()


def test_selection_apart_from_labels():
    """A selection matrix (KRT's crowd rule) picks the images; the labels stay the targets."""
    select = TRAIN.copy()
    select[4, 0] = 1  # image 4 holds an a that is no label (a crowd annotation)
    test_select = TEST.copy()
    test_select[3, 5] = 1
    steps = make_steps(TRAIN, TEST, [2, 2, 2], "partial", train_select=select, test_select=test_select)
    assert steps[0].train_rows.tolist() == [0, 1, 2, 4]
    assert steps[0].train_targets[3].tolist() == [0] * 6  # selected, with no positive label
    assert [s.test_rows.tolist() for s in steps] == [[1], [0, 1], [0, 1, 2, 3]]
    rows, _ = joint_rows_and_targets(TRAIN, 2, select)
    assert rows.tolist() == [0, 1, 2, 4]


def test_test_images_of_each_task():
    steps = make_steps(TRAIN, TEST, [2, 2, 2], "partial")
    # after step 2 the test rows are 0 (d), 1 (a b), 2 (f): task 0 (a b) is row 1, task 1 (c d) row 0
    assert [(task, at.tolist()) for task, at in steps[2].test_tasks] == [(0, [1]), (1, [0]), (2, [2])]
    assert [s.task for s in steps] == [0, 1, 2]
