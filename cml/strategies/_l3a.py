"""The `l3a` strategy's training (declared in `cml/strategies/l3a.py`, which has the method, the paper
and the deviations)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from cml.models._analytic import class_weights, sample_weights
from cml.plugins.pseudo.plugin import pseudo_labelled
from cml.runtime import distributed
from cml.strategies._base import MultiLabelStrategy
from cml.strategies._frozen import FeatureCache, cached_embed


def every_image(n: int, batch_size: int) -> list[list[int]]:
    """This rank's slices of global batches that hold every image of the step once, in order (the
    training batches may leave a last image or two out; the closed form must not). A last batch
    too small to give every rank an image joins the one before it."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < distributed.world():
        starts.pop()
    ends = starts[1:] + [n]
    return [list(range(a, b))[distributed.shard(b - a)] for a, b in zip(starts, ends)]


def learn_global_batch(
    model, embedding: torch.Tensor, targets: torch.Tensor, per_class: torch.Tensor, n_old: int, options
) -> None:
    """Adds one global batch to the statistics: this rank's slice of features and targets, gathered
    in rank order, so that every rank adds exactly what one process adds."""
    embedding, targets = distributed.all_gather_cat(embedding), distributed.all_gather_cat(targets)
    hidden = model.expand(embedding)
    if options.pseudo_labels and n_old > 0:
        targets = pseudo_labelled(targets, model.analytic(hidden)[:, :n_old], options.threshold)
    weights = sample_weights(targets, per_class) if options.weighted else torch.ones(len(targets))
    model.analytic.accumulate(hidden, targets, weights.to(hidden.device))


class L3AStrategy(MultiLabelStrategy):
    def __init__(self, *, options, steps, feature_cache: bool, **kwargs):
        super().__init__(**kwargs)
        self.options = options
        self.steps = steps
        self.train_epochs = options.base_epochs
        self.feature_cache = FeatureCache() if feature_cache else None

    def trains_backbone(self) -> bool:
        return self.experience.step == 0 and self.options.base_epochs > 0 and not self.core_model.analytic.is_fitted

    def check_model_and_optimizer(self, **kwargs):
        if self.trains_backbone():
            return super().check_model_and_optimizer(**kwargs)
        self.model = self.model_adaptation(self.core_model)  # grow the classifier; nothing trains

    def _train_exp(self, experience, eval_streams=None, **kwargs):
        trains = self.trains_backbone()
        if trains:
            super()._train_exp(experience, eval_streams, **kwargs)
            # rank 0's BatchNorm statistics before any feature is computed, and cached: else rank 1
            # kept features of its own statistics (issue 28: cache on vs off up to 5.15 AP apart)
            distributed.broadcast_buffers(self.core_model)
        self.fit_analytic()
        if not trains:  # the closed form alone learnt the step, from every image (results' n_trained)
            self.trained_size = len(self.adapted_dataset)

    @torch.no_grad()
    def fit_analytic(self) -> None:
        model = self.core_model.eval()
        model.requires_grad_(False)
        analytic = model.analytic
        step = self.steps[self.experience.step]
        analytic.add_counts(torch.from_numpy(step.train_targets).to(analytic.counts.device))
        per_class = class_weights(analytic.counts)
        n_old = min(step.classes)
        for self.mbatch in DataLoader(  # noqa: B020 (the template reads self.mbatch)
            self.adapted_dataset,
            batch_sampler=every_image(len(self.adapted_dataset), self.train_mb_size),
            **self.pass_loader_args(self.adapted_dataset),
        ):
            self._unpack_minibatch()
            learn_global_batch(model, cached_embed(self, "train"), self.mb_y, per_class, n_old, self.options)
        analytic.solve()

    def forward(self):
        if self.is_training:
            return super().forward()
        return self.core_model.classify(cached_embed(self, "test"))["logits"]
