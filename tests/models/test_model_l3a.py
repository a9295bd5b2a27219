"""L3A's weighted analytic classifier against a plain closed-form reference (numpy, float64).

The recursive update (statistics summed batch by batch, step by step, classes added as columns)
must give exactly the weighted ridge solution on every image seen so far, each image with the
weight and the target row it had at its step (zeros for classes of later steps):
W = (X^T diag(w) X + ridge I)^-1 X^T diag(w) Y. Both are float64; they differ only by the
rounding of the summation order and of the two solvers, far below TOLERANCE.
"""

import numpy as np
import pytest
import torch

from cml.config import load_config
from cml.core.errors import UserError
from cml.models._analytic import AnalyticClassifier, class_weights, sample_weights

TOLERANCE = 1e-10  # relative, on W; float64 rounding of a well-conditioned 12x12 system is ~1e-14


def test_class_and_sample_weights_by_hand():
    counts = torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64)
    # n^-1/2 = 0.5, 1, 0; K = 3; sum = 1.5 -> weights 1, 2, 0 (their normalize_sqrt)
    assert class_weights(counts).tolist() == [1.0, 2.0, 0.0]
    targets = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, -1]], dtype=torch.float64)
    assert sample_weights(targets, class_weights(counts)).tolist() == [1.5, 2.0, 0.0, 1.0]


def reference_solution(features, weights, targets, ridge):
    x, w, y = (np.concatenate(parts) for parts in (features, weights, targets))
    gram = x.T @ (w[:, None] * x) + ridge * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ (w[:, None] * y))


@pytest.mark.parametrize("ridge", [0.5, 1000.0])
def test_recursive_update_equals_closed_form_on_all_data_seen(ridge):
    rng = np.random.default_rng(0)
    hidden, steps, per_step = 12, [3, 2, 2], 40
    head = AnalyticClassifier(hidden, ridge)
    seen_x, seen_w, seen_y = [], [], []
    n_seen = 0
    for n_new in steps:
        n_seen += n_new
        head.grow(n_seen)
        x = rng.normal(size=(per_step, hidden))
        y = np.zeros((per_step, n_seen))
        y[:, n_seen - n_new :] = rng.random((per_step, n_new)) < 0.4  # partial labels: this step's classes
        y[rng.random((per_step, n_seen)) < 0.1] = 1.0  # some old-class positives (as pseudo-labels)
        head.add_counts(torch.from_numpy(y))
        w = sample_weights(torch.from_numpy(y), class_weights(head.counts)).numpy()
        for batch in np.array_split(np.arange(per_step), 3):  # batches of a step, summed one by one
            head.accumulate(torch.from_numpy(x[batch]), torch.from_numpy(y[batch]), torch.from_numpy(w[batch]))
        head.solve()
        seen_x.append(x)
        seen_w.append(w)
        seen_y = [np.pad(t, ((0, 0), (0, n_seen - t.shape[1]))) for t in seen_y] + [y]
        expected = reference_solution(seen_x, seen_w, seen_y, ridge)
        got = head.weight.numpy()
        assert got.shape == expected.shape == (hidden, n_seen)
        assert np.abs(got - expected).max() <= TOLERANCE * np.abs(expected).max()
    assert any(w.min() != w.max() for w in seen_w)  # the weights were not uniform


def test_logits_are_the_features_times_the_solution():
    head = AnalyticClassifier(4, 1.0, num_classes=2)
    head.accumulate(torch.eye(4, dtype=torch.float64), torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0]]), torch.ones(4))
    head.solve()
    # gram = I, ridge 1: W = Y / 2
    expected = torch.tensor([[0.5, 0.0], [0.0, 0.5], [0.5, 0.5], [0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(head.weight, expected, rtol=0, atol=1e-15)
    assert torch.allclose(head(torch.tensor([[2.0, 0, 0, 0]])), torch.tensor([[1.0, 0.0]]), rtol=0, atol=1e-6)


def test_non_finite_features_are_named_not_a_cholesky_traceback():
    """NaN features made every statistic NaN; Cholesky then said "not positive-definite"."""
    head = AnalyticClassifier(4, 1000.0, num_classes=2)
    features = torch.eye(4, dtype=torch.float64)
    features[1, 2] = float("nan")
    head.accumulate(features, torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0]]), torch.ones(4))
    with pytest.raises(UserError, match="non-finite .NaN or infinite. features") as err:
        head.solve()
    assert "\n" not in str(err.value) and not head.is_fitted


def test_a_ridge_too_small_for_float64_is_one_line():
    head = AnalyticClassifier(8, 1e-6, num_classes=1)
    rank_one = torch.full((3, 8), 1e6, dtype=torch.float64)  # a singular Gram of scale 1e12
    head.accumulate(rank_one, torch.ones(3, 1), torch.ones(3))
    with pytest.raises(UserError, match="model.options.ridge: 1e-06 is too small .* raise it"):
        head.solve()


@pytest.mark.parametrize(
    ("option", "expected"), [("hidden=3000000", "model.options.hidden"), ("ridge=1e-300", "model.options.ridge")]
)
def test_sizes_that_cannot_be_allocated_or_solved_are_refused_by_the_config(option, expected):
    """hidden=3000000 was a 72 TB allocation, ridge=1e-300 a Cholesky traceback: both refused before torch."""
    with pytest.raises(UserError, match=expected) as err:
        load_config(None, ["model.name=l3a", "strategy.name=l3a", f"model.options.{option}"])
    assert "\n" not in str(err.value)
