"""The discriminative regulariser (after Hassanin et al., arXiv 2107.11159) as a loss over
per-label features, for any model that emits them (`dr`, `dlfl`, `srn`):
`model.options.discriminative: {weight: 0.03, temperature: 0.1}`.

The paper pulls features of the same class together and pushes features of different classes
apart; its formula was not found, so cml uses a supervised contrastive loss (Khosla et al.,
NeurIPS 2020) over the label features of a batch:
- anchors: the feature of every (image, class) pair whose target is 1 (positive labels only:
  the feature a model emits for a class absent from the image describes nothing);
- positives of an anchor: the features of the same class in the other images of the batch;
  every other anchor (other classes, in this image and in others) is in the denominator;
- L = mean over anchors with at least one positive of
  -1/|P(a)| sum_{p in P(a)} log( exp(s_ap / t) / sum_{k != a} exp(s_ak / t) ),
  with s the cosine similarity, computed in float32.
A batch without any pair of images sharing a class (for example one-label images of distinct
classes) gives 0 with zero gradients, never NaN.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def supervised_contrastive(features: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """features (B, C, D); targets (B, >= C) with 1 for positives (0 and -1 are not anchors).
    Computed over all B*C (image, class) pairs with the non-anchors masked, not over the anchors
    picked out by `nonzero`: a data-dependent shape makes the host wait for the GPU every batch."""
    n_images, n_classes, _ = features.shape
    anchor = (targets[:, :n_classes] == 1).reshape(-1)
    label = torch.arange(n_classes, device=features.device).repeat(n_images)
    flat = F.normalize(features.reshape(n_images * n_classes, -1).float(), dim=1)
    self_pair = torch.eye(len(flat), dtype=torch.bool, device=features.device)
    pair = anchor[:, None] & anchor[None, :] & ~self_pair
    positives = pair & (label[:, None] == label[None, :])
    has_positive = positives.any(1)
    # rows without a positive get 0 everywhere (no all -inf row: its softmax, even unused, is NaN)
    logits = (flat @ flat.T / temperature).masked_fill(~pair, float("-inf")).masked_fill(~has_positive[:, None], 0)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_anchor = -(log_prob.masked_fill(~positives, 0).sum(1)) / positives.sum(1).clamp(min=1)
    # 0 with zero gradients when no anchor has a positive
    return (per_anchor * has_positive).sum() / has_positive.sum().clamp(min=1)


class DiscriminativeLoss:
    def __init__(self, weight: float, temperature: float):
        self.weight = weight
        self.temperature = temperature

    def __call__(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * supervised_contrastive(features, targets, self.temperature)


def discriminative_loss(options) -> DiscriminativeLoss | None:
    """The declared `model.options.discriminative` (`DiscriminativeOptions` or None) -> the loss, or
    None when it is off (null, or weight 0)."""
    if options is None or options.weight == 0:
        return None
    return DiscriminativeLoss(options.weight, options.temperature)
