"""CSC's training losses, as a plugin for the `csc` model (Du et al., "Confidence Self-Calibration
for Multi-Label Class-Incremental Learning", ECCV 2024; code Kaile-Du/CSC, `CSC/CSC.py`
`train_test`):

    L = alpha * L_cls(current classes) + (1 - alpha) * L_kd(old classes) + w * mean_b sum_c p log p

- L_cls: the criterion on the step's own classes only (their MultiLabelSoftMargin on
  [low, high)): the old classes' targets become -1 (left out) from the second step on;
- L_kd: MultiLabelSoftMargin (a mean BCE) of the old classes' logits against the previous
  model's sigmoids;
- the max-entropy term (their beta = -0.04, i.e. w = 0.04): p log p is lowest at p = 1/e, so it
  pulls over-confident sigmoids (near 0 or 1) of every seen class back, from the second step on;
- the label graph: at the start of each step the step's partial labels are added to the model's
  co-occurrence statistics and the new classes' rows and columns of the general graph are seeded
  from the normalised co-occurrence graph (`cml/models/_label_graph.py`).

alpha 0.5 and w 0.04 are their config's defaults (`CSC/config/voc.py`). Deviations: the
criterion is cml's `train.loss` (their MultiLabelSoftMargin is `multilabel_soft_margin`); the
graph seeding (their new graph entries are random).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from cml.core.errors import UserError
from cml.plugins._base import CmlPlugin


def max_entropy_term(logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits.float())
    return (p * torch.log(p + 1e-5)).sum(1).mean()


class ConfidenceSelfCalibration(CmlPlugin):
    def __init__(self, steps, alpha: float, entropy_weight: float):
        super().__init__()
        self.steps = steps
        self.alpha = alpha
        self.entropy_weight = entropy_weight

    def before_training_exp(self, strategy, **kwargs):
        model = strategy.core_model
        if not hasattr(model, "cooccurrence"):
            raise UserError(f"strategy.plugins: csc needs model csc (its label graph), got {type(model).__name__}")
        step = self.steps[strategy.experience.step]
        model.cooccurrence.add(torch.from_numpy(step.train_targets).to(model.cooccurrence.joint.device))
        model.gcn.general.seed_new(model.cooccurrence.graph(), min(step.classes))
        if strategy.previous_model is not None:  # alpha weighs the current classes' loss from step 2 on
            strategy.weigh_criterion(self.name, self.alpha)

    def after_forward(self, strategy, **kwargs):
        n_old = min(self.steps[strategy.experience.step].classes)
        if n_old:  # the criterion sees the step's own classes only
            targets = strategy.mb_y.clone()
            targets[:, :n_old] = -1
            strategy.mbatch[1] = targets

    def before_backward(self, strategy, **kwargs):
        old = strategy.previous_outputs()
        if old is None:
            return
        logits = strategy.mb_outputs["logits"]
        n_old = old["logits"].shape[1]
        kd = F.binary_cross_entropy_with_logits(logits[:, :n_old].float(), torch.sigmoid(old["logits"].float()))
        strategy.plugin_term(f"{self.name}.distillation", (1 - self.alpha) * kd)
        strategy.plugin_term(f"{self.name}.entropy", self.entropy_weight * max_entropy_term(logits))
