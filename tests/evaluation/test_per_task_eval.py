"""PRS's evaluation (per-task present-class metrics, tally, groups, relative forgetting) and the
count-based class groups, against plain hand computations."""

import math

import numpy as np
import pytest
import torch

from cml.evaluation.per_task import per_task_values, relative_forgetting
from cml.protocols.groups import groups_from_counts

GROUPS = {"majority": [0, 1, 2], "moderate": [3, 4], "minority": [5, 6, 7]}


def hand(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """PRS's validate() in plain numpy: present classes only, strict threshold, CF1 from mean CP, CR."""
    present = [c for c in range(targets.shape[1]) if targets[:, c].sum() > 0]
    if not present:
        return {k: math.nan for k in ("map", "cp", "cr", "cf1", "op", "or", "of1")}
    s, y = scores[:, present], targets[:, present]
    aps = []
    for c in range(len(present)):  # sklearn's average_precision_score: tied scores are one threshold
        ap, recall_before = 0.0, 0.0
        for t in sorted(set(s[:, c]), reverse=True):
            above = s[:, c] >= t
            recall = y[above, c].sum() / y[:, c].sum()
            ap += (recall - recall_before) * y[above, c].mean()
            recall_before = recall
        aps.append(ap)
    predicted = s > threshold
    tp = (predicted & (y == 1)).sum(0)
    n_pred, n_pos = predicted.sum(0), y.sum(0)
    cp = np.mean([t / p if p else 0.0 for t, p in zip(tp, n_pred)])
    cr = np.mean(tp / n_pos)
    op, orec = tp.sum() / n_pred.sum(), tp.sum() / n_pos.sum()
    return {
        "map": 100 * np.mean(aps),
        "cp": 100 * cp,
        "cr": 100 * cr,
        "cf1": 100 * 2 * cp * cr / (cp + cr),
        "op": 100 * op,
        "or": 100 * orec,
        "of1": 100 * 2 * op * orec / (op + orec),
    }


def check(got: dict, want: dict):
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-5), key


def test_per_task_values_against_hand():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 8))
    targets = (rng.random((40, 8)) < 0.3).astype(float)
    targets[:20, 5:] = 0  # task 0 holds no minority class: its minority values are undefined
    targets[:20, 0] = 1
    scores[0, 1] = 0.5  # exactly at the threshold: not a prediction under the strict rule
    tasks = [(2, np.arange(0, 20)), (0, np.arange(15, 40))]  # overlapping: the tally counts 15..19 twice
    got = per_task_values(torch.tensor(scores), torch.tensor(targets), tasks, GROUPS, 0.5, strict=True)
    for record, (task, rows) in zip(got["tasks"], tasks):
        assert record["task"] == task and record["n_test"] == len(rows)
        assert record["n_classes"] == int((targets[rows].sum(0) > 0).sum())
        check(record, hand(scores[rows], targets[rows], 0.5))
        for group, members in GROUPS.items():
            present = [c for c in members if targets[rows, c].sum() > 0]
            check(record["groups"][group], hand(scores[rows][:, present], targets[rows][:, present], 0.5))
    assert math.isnan(got["tasks"][0]["groups"]["minority"]["map"])
    both = np.concatenate([rows for _, rows in tasks])
    assert got["tally"]["n_test"] == 45
    check(got["tally"], hand(scores[both], targets[both], 0.5))
    check(got["tally"]["groups"]["moderate"], hand(scores[both][:, 3:5], targets[both][:, 3:5], 0.5))


def record(task, map_, cf1, of1, minority=None):
    group = {"map": minority if minority is not None else math.nan, "cf1": 10.0, "of1": 10.0}
    return {
        "task": task,
        "map": map_,
        "cf1": cf1,
        "of1": of1,
        "groups": {"majority": {"map": map_, "cf1": cf1, "of1": of1}, "minority": group},
    }


def test_relative_forgetting_against_hand():
    # task order 4, 1, 7; values after each step (None: undefined, as results.json writes NaN)
    steps = [
        {"per_task": {"tasks": [record(4, 50.0, 40.0, 0.0, minority=20.0)]}},
        {"per_task": {"tasks": [record(4, 60.0, 30.0, 0.0, minority=5.0), record(1, 0.0, 8.0, 30.0)]}},
        {
            "per_task": {
                "tasks": [
                    record(4, 45.0, 20.0, 0.0, minority=10.0),
                    record(1, 0.0, 2.0, 0.0),
                    record(7, 70.0, 70.0, 70.0),
                ]
            }
        },
    ]
    got = relative_forgetting(steps)
    # task 4: mAP best earlier 60 -> 45: 25%; CF1 40 -> 20: 50%; OF1 0 -> 0: PRS counts it as 100%
    # task 1: mAP 0 -> 0: 100%; CF1 8 -> 2: 75%; OF1 30 -> 0: 100%; task 7 is the last: no value
    assert [e["task"] for e in got["per_task"]] == [4, 1]
    assert got["per_task"][0]["map"] == pytest.approx(25) and got["per_task"][1]["cf1"] == pytest.approx(75)
    assert got["map"] == pytest.approx((25 + 100) / 2)
    assert got["cf1"] == pytest.approx((50 + 75) / 2)
    assert got["of1"] == pytest.approx((100 + 100) / 2)
    # minority: only task 4 holds a minority class (best 20 -> 10: 50%); task 1's is undefined
    assert got["minority"]["map"] == pytest.approx(50) and math.isnan(got["per_task"][1]["minority"]["map"])
    assert got["majority"]["map"] == got["map"]
    # best earlier 0, final 5: PRS's (0 - final) / 1, in percent points
    steps[1]["per_task"]["tasks"][1]["map"] = 0.0
    steps[2]["per_task"]["tasks"][1]["map"] = 5.0
    assert relative_forgetting(steps)["per_task"][1]["map"] == pytest.approx(-5)
    assert relative_forgetting(steps[:1]) is None


def test_groups_from_counts():
    counts = np.array([100, 70, 69, 10, 9, 0, 35])
    # count / largest: 1, .7, .69, .1, .09, 0, .35 -> majority >= .7, minority < .1
    assert groups_from_counts(counts, [0.1, 0.7]) == {"majority": [0, 1], "moderate": [2, 3, 6], "minority": [4, 5]}
    assert groups_from_counts(counts, [0.0, 1.0]) == {"majority": [0], "moderate": [1, 2, 3, 4, 5, 6], "minority": []}
