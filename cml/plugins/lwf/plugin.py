"""Multi-label Learning without Forgetting (Li and Hoiem, 2016): distil the previous step's model.

Avalanche's `LwFPlugin` distils a softmax over each task head with a KL divergence. That is wrong
for multi-label outputs: the old classes are independent yes/no outputs, not one distribution,
and a softmax would make them compete. Here each old class is its own Bernoulli variable:

    L = weight * T^2 * mean over samples and old classes of KL(sigmoid(q/T) || sigmoid(z/T))

q: the previous model's logits; z: the current model's logits of the same classes; old classes:
the previous model's outputs. The Bernoulli KL is the binary cross-entropy between the two
temperature-scaled sigmoids minus the teacher's entropy: the same gradient as the BCE, but zero
when the models agree, so the added loss shows how far the model has drifted. T^2 keeps the
gradient's size about independent of T (Hinton et al., 2015). Mean rather than sum, like the
mean BCE of the criterion, so that `weight` means the same whatever the batch size and the
number of old classes.

With `feature_weight > 0` (models with per-label features: `label_features` of shape (B, C, D)),
it also adds feature_weight * the mean squared difference between the two models' features of
the old classes, averaged over samples, old classes and feature dimensions.

With a criterion summed over the images (ASL) the term goes through `strategy.plugin_term`, so that
`weight` stays a per-image ratio to the classification loss (docs/regularisation.md).

Every sample of the batch that reaches the forward is distilled (replayed ones included). The
loss is added in `before_backward` through `strategy.plugin_term`, so the order of plugins does not matter.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from cml.plugins._base import CmlPlugin


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean Bernoulli KL(sigmoid(old/T) || sigmoid(new/T)) over the old model's classes."""
    student = new_logits[:, : old_logits.shape[1]].float() / temperature
    teacher = old_logits.float() / temperature
    target = torch.sigmoid(teacher)
    kl = F.binary_cross_entropy_with_logits(student, target, reduction="none") - F.binary_cross_entropy_with_logits(
        teacher, target, reduction="none"
    )
    return temperature**2 * kl.mean()


def feature_distillation_loss(new_features: torch.Tensor, old_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the old classes' per-label features ((B, C, D) tensors)."""
    return (new_features[:, : old_features.shape[1]].float() - old_features.float()).pow(2).mean()


class MultiLabelLwF(CmlPlugin):
    def __init__(self, weight: float, temperature: float, feature_weight: float = 0.0):
        super().__init__()
        self.weight = weight
        self.temperature = temperature
        self.feature_weight = feature_weight

    def before_backward(self, strategy, **kwargs):
        new = strategy.mb_outputs
        old = strategy.previous_outputs()
        if old is None:  # the first step: nothing to distil
            return
        loss = self.weight * distillation_loss(new["logits"], old["logits"], self.temperature)
        if self.feature_weight:
            loss = loss + self.feature_weight * feature_distillation_loss(new["label_features"], old["label_features"])
        strategy.plugin_term(self.name, loss)
