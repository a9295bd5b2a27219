"""KRT's token distillation (TDL; Dong et al., ICCV 2023, reference sheet section 4b).

    L = weight * sqrt(n_seen / n_increment) * mean over images of (1 - cos(old, new))

old: the previous model's per-step tokens, concatenated (its steps 0..t-1); new: the current
model's tokens of the same steps, concatenated; n_seen: classes seen including the current step;
n_increment: the current step's classes. This is the authors' CosineEmbeddingLoss with target +1.

Only models that emit per-step tokens (declared `task_tokens`: `krt`) can be distilled this way; the
declaration's check refuses the others with one line, with the config (before torch). The term is a mean over
the images and
goes through `strategy.plugin_term` (cml/strategies/_base.py): with ASL, summed over the batch,
`weight` stays a per-image ratio to the classification loss, so the authors' lambda (100 COCO B0,
300 COCO B40, 80 VOC, beside ASL summed over 64 images per GPU) is lambda / 64 here
(docs/regularisation.md).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from cml.plugins._base import CmlPlugin


def token_distillation(new_tokens: torch.Tensor, old_tokens: torch.Tensor) -> torch.Tensor:
    """Mean over images of 1 - cos(old tokens, the new model's tokens of the old steps), each
    image's tokens (steps, D) concatenated into one vector."""
    old = old_tokens.float().flatten(1)
    new = new_tokens[:, : old_tokens.shape[1]].float().flatten(1)
    return (1 - F.cosine_similarity(new, old, dim=1)).mean()


def step_factor(n_seen: int, n_increment: int) -> float:
    """KRT's and PODNet's sqrt(n_seen / n_increment): more weight as old classes outnumber new."""
    return math.sqrt(n_seen / n_increment)


class TokenDistillation(CmlPlugin):
    def __init__(self, weight: float, scenario):
        super().__init__()
        self.weight = weight
        self.scenario = scenario

    def before_backward(self, strategy, **kwargs):
        old = strategy.previous_outputs()
        if old is None:  # the first step: nothing to distil
            return
        step = self.scenario.steps[strategy.experience.step]
        factor = step_factor(step.n_seen, len(step.classes))
        loss = token_distillation(strategy.mb_outputs["tokens"], old["tokens"])
        strategy.plugin_term(self.name, self.weight * factor * loss)
