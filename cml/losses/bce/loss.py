"""Mean binary cross-entropy with logits over the (image, class) pairs whose target is not -1."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from cml.losses._masked import masked_targets


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets, valid = masked_targets(logits, targets)
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return (loss * valid).sum() / valid.sum().clamp(min=1)
