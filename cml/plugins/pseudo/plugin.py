"""Old-class pseudo-labels: the previous step's model labels the old classes of the new images.

Under partial labels a step's images carry only that step's classes; an old class they show is
left at 0 and trained as a negative, which is much of what old classes forget. Restoring these
labels from the previous model is what KRT's dynamic pseudo-label module does (Dong et al.,
ICCV 2023); here with one fixed threshold: where the previous model's sigmoid is >= `threshold`,
the target of that old class becomes 1. Only old classes (the previous model's outputs) and only
targets at 0: a real positive stays, and a -1 (left out) stays left out. Every sample of the
batch that reaches the forward is relabelled, replayed ones included (their old classes of
other steps are unlabelled too).

The targets are replaced in `after_forward`, when the batch is final (replay plugins add their
samples earlier) and before the criterion reads them, so the order of plugins does not matter.
With `scenario.labels: full` the old classes' 0s are real negatives, so the plugin declares that it
needs `scenario.labels: partial` (checked with the config).
"""

from __future__ import annotations

import torch

from cml.plugins._base import CmlPlugin


def pseudo_labelled(targets: torch.Tensor, old_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """A copy of `targets` with the confident old classes set to 1 where they were 0."""
    n_old = old_logits.shape[1]
    old = targets[:, :n_old]
    confident = (torch.sigmoid(old_logits.float()) >= threshold) & (old == 0)
    return torch.cat([torch.where(confident, torch.ones_like(old), old), targets[:, n_old:]], dim=1)


class PseudoLabels(CmlPlugin):
    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def after_forward(self, strategy, **kwargs):
        old = strategy.previous_outputs()
        if old is not None:
            strategy.mbatch[1] = pseudo_labelled(strategy.mb_y, old["logits"], self.threshold)
