"""torch's MultiLabelSoftMarginLoss (PRS's loss) with -1 targets left out."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from cml.losses._masked import masked_targets


def multilabel_soft_margin(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per image the mean BCE over its classes, then the mean over the batch; -1 targets are left
    out of their image's mean."""
    targets, valid = masked_targets(logits, targets)
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return ((loss * valid).sum(1) / valid.sum(1).clamp(min=1)).mean()
