"""Loss terms through one door: what plugins add to the training loss, and the step's breakdown.

Plugins never assign `strategy.loss`. A plugin adds its term with `strategy.plugin_term(name,
term)` in any hook up to `before_backward`; the strategy adds the batch's terms to the loss after
every plugin's `before_backward`, in the order of their names, so the loss (its value and its
gradient) does not depend on the order of `strategy.plugins`. A plugin that weighs the
classification loss (CSC's alpha on the current classes' loss) sets a criterion weight for the
step with `strategy.weigh_criterion(name, weight)` instead of rescaling the loss, so that terms
added by other plugins keep their own weights. Adding them up where Avalanche lets every plugin
rewrite `strategy.loss` made `[lwf, csc]` and `[csc, lwf]` two different losses (issue 25).

The breakdown (`step_record()["loss_breakdown"]` in results.json) is each part's mean over the
step's batches and images: the weighted criterion, the model's own terms (`model.<name>`) and
each plugin's term; summed on the device and read once at the end of the step (no host sync per
batch); under torchrun each rank's value is weighted by its share of the batch and the ranks'
sums are added, so the breakdown is the global batch's, as in one process.
"""

from __future__ import annotations

import torch

from cml.runtime import distributed


class LossTerms:
    def __init__(self):
        self.criterion_weights: dict[str, float] = {}  # this step's, by the plugin that set it
        self.batch: dict[str, torch.Tensor] = {}  # this batch's plugin terms
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def start_step(self) -> None:
        self.criterion_weights, self.batch, self.sums, self.batches = {}, {}, {}, 0

    def criterion_weight(self) -> float:
        weight = 1.0
        for name in sorted(self.criterion_weights):
            weight *= self.criterion_weights[name]
        return weight

    def add(self, name: str, term: torch.Tensor) -> None:
        self.batch[name] = self.batch[name] + term if name in self.batch else term

    def fold(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], share: float) -> torch.Tensor:
        """LOSS plus this batch's plugin terms in name order; PARTS (the criterion and the model's
        terms) and the plugin terms recorded for the breakdown, weighted by this rank's SHARE."""
        for name in sorted(self.batch):
            loss = loss + self.batch[name]
        for name, term in {**parts, **self.batch}.items():
            value = (term.detach().float() * share).reshape(())  # share: a 1-element tensor under torchrun
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.batches += 1
        self.batch = {}
        return loss

    def breakdown(self) -> dict[str, float]:
        """Every rank calls it (a collective under torchrun), with the same names."""
        names = sorted(self.sums)
        if not names:
            return {}
        totals = distributed.all_reduce_(torch.stack([self.sums[n] for n in names])).tolist()
        return {n: total / (self.batches * distributed.world()) for n, total in zip(names, totals)}
