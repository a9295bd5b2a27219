"""ASL (Ridnik et al., ICCV 2021): negatives' probabilities are shifted down by `clip` and both
sides focal-weighted; summed over the batch as the authors' code does (declared reduction "sum").
The focal weight is a constant of the gradient, as the ASL project computes it by default
(`disable_torch_grad_focal_loss`) and KRT uses it; `focal_grad` differentiates it too."""

from __future__ import annotations

import torch

from cml.losses._masked import masked_targets


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    focal_grad: bool = False,
) -> torch.Tensor:
    y, valid = masked_targets(logits, targets)
    p = torch.sigmoid(logits.float())
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    loss = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
    with torch.set_grad_enabled(focal_grad and torch.is_grad_enabled()):
        weight = torch.pow(1 - (p * y + p_neg * (1 - y)), gamma_pos * y + gamma_neg * (1 - y))
    loss = loss * weight
    return -(loss * valid).sum()
