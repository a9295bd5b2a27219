"""ASL (Ridnik et al., ICCV 2021): negatives' probabilities are shifted down by `clip` and both
sides focal-weighted; summed over the batch as the authors' code does (declared reduction "sum")."""

from __future__ import annotations

import torch

from cml.losses._masked import masked_targets


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 4.0,
                    gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    y, valid = masked_targets(logits, targets)
    p = torch.sigmoid(logits.float())
    p_neg = (1 - p + clip).clamp(max=1) if clip > 0 else 1 - p
    loss = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
    p_true = p * y + p_neg * (1 - y)
    loss = loss * torch.pow(1 - p_true, gamma_pos * y + gamma_neg * (1 - y))
    return -(loss * valid).sum()
