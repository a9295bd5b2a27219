"""L3A's weighted analytic classifier (WAC): a ridge regression onto multi-hot targets, solved in
closed form from statistics that are sums over every image seen so far, so that learning step t
without its images gives the solution on all of them.

Paper: Zhang et al., "L3A: Label-Augmented Analytic Adaptation for Multi-Label Class Incremental
Learning", ICML 2025 (PMLR 267). Code read: scut-zx/L3A, `MultiLabelIncremental_L3A.py`
(`weight_cls_align`, `weight_IL_align`) and `normalize_sqrt` in `src/helper_functions`.

With h_i the image's expanded feature (the frozen buffer layer's ReLU output), y_i its target
row padded with zeros for the classes of later steps, and omega_i its weight:

    gram  = sum_i omega_i h_i h_i^T                 (H, H)
    cross = sum_i omega_i h_i y_i^T                 (H, C), a new step adds columns
    W     = (gram + ridge * I)^-1 cross             the weighted ridge solution on all data so far

The recursive update of the paper (Woodbury on R = (gram + ridge I)^-1) is an identity on the same
two sums; the authors' code (`recurbase: False`) keeps the sums and inverts again at each step,
and so does cml: `accumulate` is the exact recursion of the statistics, `solve` a direct solve, so
W equals the closed-form solution on everything seen, not an approximation of it.

Sample weights (their `normalize_sqrt`, beta 0.5): over the K classes seen so far with training
counts n_k (every step's labels, counted before pseudo-labelling), class weight
w_k = K * n_k^-1/2 / sum_j n_j^-1/2 (0 for a class never seen positive), and omega_i = the mean of
w_k over the image's positives (after pseudo-labelling). Weights are fixed when the image is
learnt: later counts do not re-weight earlier steps' images (as their code).

Precision: float64 throughout, a deliberate deviation: the authors' statistics and solve are
float32 (reference sheet section 4c). The sums gain one rank-one term per image; in float32 80k
terms lose about 5 of the 7 digits, and the solve loses log10(cond) more (cond grows with the
feature scale over the ridge); float64 keeps about 16. `forward` multiplies in float64 and
returns float32 logits.

Deviations: float64 (above); an image with no positive label (KRT's crowd-only COCO images;
their code divides by zero there) gets weight 0 and adds nothing; the solve uses a Cholesky
factorisation of the symmetric positive definite matrix instead of `torch.inverse`; non-finite
features and a ridge too small for the float64 solve are one line each, not a Cholesky traceback.
"""

from __future__ import annotations

import torch
from avalanche.models import DynamicModule

from cml.core.errors import UserError
from cml.models._parts import head_size


def class_weights(counts: torch.Tensor) -> torch.Tensor:
    """K * n^-1/2 / sum n^-1/2 over the classes seen so far; 0 for classes with no positive."""
    inverse = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))
    total = inverse.sum()
    return inverse * (len(counts) / total) if total > 0 else inverse


def sample_weights(targets: torch.Tensor, per_class: torch.Tensor) -> torch.Tensor:
    """The mean class weight over each image's positives; 0 for an image without one."""
    positive = (targets[:, : len(per_class)] == 1).to(per_class.dtype)
    n = positive.sum(1)
    return (positive @ per_class) / n.clamp(min=1)


class AnalyticClassifier(DynamicModule):
    """The statistics and the solved weights are buffers: they are in the model's state_dict,
    hence in every checkpoint, and grow (zero columns) with the classes like the other heads."""

    def __init__(self, hidden: int, ridge: float, num_classes: int = 0):
        super().__init__()
        self.ridge = ridge
        self.register_buffer("gram", torch.zeros(hidden, hidden, dtype=torch.float64))
        self.register_buffer("cross", torch.zeros(hidden, 0, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(hidden, 0, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.is_fitted = False  # `fitted` on the host: read at every forward, it would sync the GPU each batch
        self.grow(num_classes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "fitted" in state_dict:  # a checkpoint's tensors are on the CPU
            self.is_fitted = bool(state_dict[prefix + "fitted"])

    @property
    def num_classes(self) -> int:
        return self.weight.shape[1]

    def grow(self, num_classes: int) -> None:
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        pad = self.weight.new_zeros(self.weight.shape[0], extra)
        self.cross = torch.cat([self.cross, pad], dim=1)
        self.weight = torch.cat([self.weight, pad], dim=1)
        self.counts = torch.cat([self.counts, self.counts.new_zeros(extra)])

    def adaptation(self, experience) -> None:
        if self.training:
            self.grow(head_size(experience))

    def add_counts(self, targets: torch.Tensor) -> None:
        """A step's label counts (its targets as given, before pseudo-labels)."""
        self.counts += (targets[:, : self.num_classes] == 1).sum(0).to(self.counts)

    def accumulate(self, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> None:
        h = hidden.to(torch.float64)
        y = targets[:, : self.num_classes].clamp(min=0).to(torch.float64)
        weighted = h * weights.to(torch.float64)[:, None]
        self.gram += weighted.T @ h
        self.cross += weighted.T @ y

    def solve(self) -> None:
        """W from the statistics, or one line saying why not: a NaN or infinite feature makes every
        statistic NaN, and Cholesky would only say "not positive-definite", which sends the user to
        the ridge instead of to the features."""
        if not (torch.isfinite(self.gram).all() and torch.isfinite(self.cross).all()):
            raise UserError(
                "model l3a: the backbone gave non-finite (NaN or infinite) features, so the closed-form "
                "classifier cannot be solved; check model.pretrained's weights, and with "
                "strategy.l3a.base_epochs > 0 lower train.lr or set train.amp: none"
            )
        regularised = self.gram + self.ridge * torch.eye(len(self.gram), dtype=self.gram.dtype, device=self.gram.device)
        factor, info = torch.linalg.cholesky_ex(regularised)
        if int(info) != 0:
            raise UserError(
                f"model.options.ridge: {self.ridge:g} is too small for these features (the regularised "
                "Gram matrix is not positive-definite in float64); raise it (their rg: 1000)"
            )
        self.weight = torch.cholesky_solve(self.cross, factor)
        self.fitted.fill_(True)
        self.is_fitted = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden.to(torch.float64) @ self.weight).float()
