"""Pseudo-labels: only old classes, only at or above the threshold, only where the target is 0."""

import math
from types import SimpleNamespace

import pytest
import torch

from cml.config import load_config
from cml.core.errors import UserError
from cml.plugins.pseudo.plugin import PseudoLabels, pseudo_labelled

LOGIT = math.log(0.7 / 0.3)  # sigmoid = 0.7 exactly (up to rounding: the test uses a margin)


def test_only_confident_old_zeros_become_positive():
    # classes 0-2 are old (the previous model's outputs), 3-4 new, 5 not seen yet
    targets = torch.tensor([[0, 0, 1, 0, 1, 0], [-1, 0, 0, 1, 0, 0], [0, 1, -1, 0, 0, 0.0]])
    old_logits = torch.tensor(
        [
            [3.0, -3.0, -3.0],  # confident 0 -> 1; unsure 0 stays; positive stays
            [3.0, LOGIT + 1e-4, LOGIT - 1e-2],  # -1 stays -1 however sure; threshold inclusive
            [0.0, -5.0, 5.0],
        ]
    )  # low score never removes a real positive; -1 kept
    out = pseudo_labelled(targets, old_logits, threshold=0.7)
    assert out.tolist() == [[1, 0, 1, 0, 1, 0], [-1, 1, 0, 1, 0, 0], [0, 1, -1, 0, 0, 0]]
    assert targets[0, 0].item() == 0  # the input is not modified


def test_threshold_bounds():
    targets = torch.zeros(1, 2)
    logits = torch.tensor([[0.0, -20.0]])  # sigmoid 0.5 and ~2e-9
    assert pseudo_labelled(targets, logits, 0.5).tolist() == [[1, 0]]
    assert pseudo_labelled(targets, logits, 0.0).tolist() == [[1, 1]]
    assert pseudo_labelled(targets, logits, 1.0).tolist() == [[0, 0]]


def test_plugin_replaces_the_batch_targets():
    targets = torch.tensor([[0.0, 0.0, 1.0]])
    strategy = SimpleNamespace(
        mbatch=[torch.zeros(1), targets, torch.zeros(1)],
        previous_outputs=lambda: {"logits": torch.tensor([[4.0, -4.0]])},
    )
    strategy.mb_y = strategy.mbatch[1]
    PseudoLabels(0.7).after_forward(strategy)
    assert strategy.mbatch[1].tolist() == [[1.0, 0.0, 1.0]]
    first_step = SimpleNamespace(mbatch=[None, targets, None], mb_y=targets, previous_outputs=lambda: None)
    PseudoLabels(0.7).after_forward(first_step)
    assert first_step.mbatch[1] is targets


def test_full_labels_are_refused_with_the_config():
    with pytest.raises(UserError, match="pseudo needs scenario.labels: partial"):
        load_config(None, ["scenario.labels=full", "strategy.plugins=[pseudo]"])


def test_with_every_output_only_the_old_classes_are_pseudo_labelled():
    """model.outputs: all: the previous model scores all 4 classes; at step 1 (old: 0, 1) the
    confident new and future classes stay 0, as do the dynamic count's scores beyond the old."""
    targets = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    strategy = SimpleNamespace(
        mbatch=[None, targets, None],
        mb_y=targets,
        experience=SimpleNamespace(step=1),
        previous_outputs=lambda: {"logits": torch.tensor([[4.0, -4.0, 4.0, 4.0]])},
    )
    PseudoLabels(0.7, n_classes=4, n_old_by_step=[0, 2]).after_forward(strategy)
    assert strategy.mbatch[1].tolist() == [[1.0, 0.0, 1.0, 0.0]]
