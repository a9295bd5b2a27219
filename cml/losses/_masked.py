"""What every loss does first: targets carry every class of the dataset (so that steps' datasets
collate together), the logits only the classes the head has; a target of -1 is a label to leave
out of the loss."""

from __future__ import annotations

import torch


def masked_targets(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets of the head's classes with -1 as 0, float mask of the labels that count)."""
    targets = targets[:, : logits.shape[1]]
    return targets.clamp(min=0), (targets >= 0).float()
