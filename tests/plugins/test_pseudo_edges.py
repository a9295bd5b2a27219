"""The dynamic pseudo-label threshold's edge cases as KRT's code decides them (reference sheet
section 4b): the stopping test |mean - target| < 0.1 in float32, and 99 moves at most. Each trace
is one where float64 or a 100th move would end elsewhere."""

import numpy as np
import pytest
import torch

from cml.plugins.pseudo.plugin import calibrate_threshold


def f32(x: float) -> float:
    return float(np.float32(x))


def test_float32_rounding_decides_the_stop():
    """10 images, one old class: nine scores 0.95 and one 0.8125 (exact in binary); target 0.9.
    At 0.8 every image counts: mean 1.0. In float64 |1.0 - 0.9| = 0.09999999999999998 < 0.1 (stop
    there); in float32 1.0 - f32(0.9) = 0.10000002384 > f32(0.1) = 0.10000000149: move up. 0.805 and
    0.81 still count all ten (0.8125 is above them), 0.815 (three moves) leaves 0.8125 out: 0.9."""
    assert abs(1.0 - 0.9) < 0.1  # float64 would stop at once
    assert np.float32(1.0) - np.float32(0.9) > np.float32(0.1)  # float32 does not
    scores = torch.tensor([[0.95]] * 9 + [[0.8125]])
    threshold, per_image, reached = calibrate_threshold(scores, 0.8, 0.9)
    assert reached and per_image == f32(0.9)
    assert threshold == ((0.8 + 0.005) + 0.005) + 0.005  # the authors' python-float moves, three


def test_a_mean_just_inside_in_float64_is_outside_in_float32():
    """Mean 0.5 against target 0.6: in float64 0.6 - 0.5 = 0.09999999999999998 < 0.1 (stop at the
    start); in float32 f32(0.6) - 0.5 = 0.100000024 > f32(0.1). 4 images, one old class, scores
    0.9, 0.9, 0.7925, 0.1. From 0.8 the mean is 0.5 < 0.6: down to 0.795 (0.5), down to 0.79
    (0.7925 joins: 0.75 > 0.6), up to 0.795 (0.5), ...: odd moves land on 0.795, even ones on
    0.79; the 99th (odd) ends on 0.795 with 0.5, not reached."""
    assert np.float32(0.6) - np.float32(0.5) > np.float32(0.1) and 0.6 - 0.5 < 0.1
    scores = torch.tensor([[0.9], [0.9], [0.7925], [0.1]])
    threshold, per_image, reached = calibrate_threshold(scores, 0.8, 0.6)
    expected = 0.8
    for move in range(1, 100):
        expected += -0.005 if move in (1, 2) or move % 2 == 0 else 0.005
    assert not reached and per_image == 0.5
    assert threshold == pytest.approx(expected, abs=1e-12) and expected == pytest.approx(0.795)


@pytest.mark.parametrize(
    ("score", "reached", "moves"),
    [
        (0.6925, True, 99),  # leaves the count at the 99th move (0.695): reached, the last one tested
        (0.6975, False, 99),  # would leave it only at the 100th (0.700): the authors give up before
    ],
)
def test_ninety_nine_moves_at_most(score, reached, moves):
    """10 images, all at `score`, target 0.05; from 0.2 upward the mean stays 1.0 until the
    threshold passes the score, then 0.0 (within 0.1 of 0.05)."""
    scores = torch.full((10, 1), score)
    threshold, per_image, got = calibrate_threshold(scores, 0.2, 0.05)
    expected = 0.2
    for _ in range(moves):
        expected += 0.005
    assert got is reached and threshold == pytest.approx(expected, abs=1e-12)
    assert per_image == (0.0 if reached else 1.0)
