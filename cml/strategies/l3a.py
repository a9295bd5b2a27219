"""L3A: exemplar-free multi-label class-incremental learning by closed-form (analytic) updates on a
frozen backbone, with old-class pseudo-labels and per-image weights against class imbalance.

Paper: Zhang et al., "L3A: Label-Augmented Analytic Adaptation for Multi-Label Class Incremental
Learning", ICML 2025. Code read: scut-zx/L3A, `MultiLabelIncremental_L3A.py` (`_train_task`,
`weight_cls_align`, `weight_IL_align`), configs `l3a_tresnetm_coco.yaml` / `_voc.yaml`.

Per step, as their code:
1. first step only, `strategy.l3a.base_epochs` > 0: the backbone and a linear head train by
   gradient (their: 1 epoch, ASL, Adam + OneCycle at base_lr); then the backbone is frozen for
   good (eval mode, no gradient);
2. the step's label counts are added to the class counts (labels as given, before pseudo-labels);
3. one pass over the step's images without augmentation: the frozen feature, expanded by the
   random buffer layer; old classes whose sigmoid(analytic output) passes the threshold become
   positives (pseudo-label module, from the classifier as it stood before this step); each image
   weighted (`cml.models._analytic`); the statistics accumulate;
4. the classifier is solved in closed form. No image is stored, no gradient after step 1.

torchrun: each rank embeds its slice of every global batch; the slices' features and targets are
gathered in rank order (`all_gather_cat`) so that every rank adds the same global batch, in the
same order, as one process would: the statistics are the one-process statistics (bit-identical
for identical features), not a sum of per-rank partial sums rounded differently. Class counts
come from the step's whole target table, identical on every rank. The authors' code counts per
rank without reducing them.

Deviations: the pseudo-label rule is cml's `pseudo_labelled` (>= threshold, only where the
target is 0; theirs is > and overwrites any target); no plugins (L3A is exemplar-free and has its
own pseudo-labels); random augmentation is refused, as in their code (Resize + ToTensor only),
which is also what makes the frozen features cacheable (`cml/strategies/_frozen.py`).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from cml import distributed
from cml.errors import UserError
from cml.models._analytic import class_weights, sample_weights
from cml.strategies import STRATEGIES
from cml.strategies._base import MultiLabelStrategy
from cml.strategies._frozen import FeatureCache, cached_embed, require_deterministic_inputs
from cml.strategies.plugins.pseudo import pseudo_labelled


def every_image(n: int, batch_size: int) -> list[list[int]]:
    """This rank's slices of global batches that hold every image of the step once, in order (the
    training batches may leave a last image or two out; the closed form must not). A last batch
    too small to give every rank an image joins the one before it."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < distributed.world():
        starts.pop()
    ends = starts[1:] + [n]
    return [list(range(a, b))[distributed.shard(b - a)] for a, b in zip(starts, ends)]


def learn_global_batch(model, embedding: torch.Tensor, targets: torch.Tensor, per_class: torch.Tensor,
                       n_old: int, options) -> None:
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
        return self.experience.step == 0 and self.options.base_epochs > 0 and not bool(self.core_model.analytic.fitted)

    def check_model_and_optimizer(self, **kwargs):
        if self.trains_backbone():
            return super().check_model_and_optimizer(**kwargs)
        self.model = self.model_adaptation(self.core_model)  # grow the classifier; nothing trains

    def _train_exp(self, experience, eval_streams=None, **kwargs):
        if self.trains_backbone():
            super()._train_exp(experience, eval_streams, **kwargs)
        self.model = self.core_model  # no DDP wrapper: from here on nothing takes a gradient
        self.fit_analytic()

    @torch.no_grad()
    def fit_analytic(self) -> None:
        model = self.core_model.eval()
        model.requires_grad_(False)
        analytic = model.analytic
        step = self.steps[self.experience.step]
        analytic.add_counts(torch.from_numpy(step.train_targets).to(analytic.counts.device))
        per_class = class_weights(analytic.counts)
        n_old = min(step.classes)
        for self.mbatch in DataLoader(self.adapted_dataset, batch_sampler=every_image(len(self.adapted_dataset),
                                                                                     self.train_mb_size),
                                      **self._loader_args()):
            self._unpack_minibatch()
            learn_global_batch(model, cached_embed(self, "train"), self.mb_y, per_class, n_old, self.options)
        analytic.solve()

    def forward(self):
        if self.is_training:
            return super().forward()
        return self.core_model.classify(cached_embed(self, "test"))["logits"]


@STRATEGIES.register("l3a")
def l3a(scenario, cfg, plugins=(), **kwargs) -> L3AStrategy:
    if cfg.model.name != "l3a":
        raise UserError(f"model.name: strategy l3a needs model l3a (its analytic classifier), got {cfg.model.name!r}")
    if plugins:
        raise UserError("strategy.plugins: strategy l3a is exemplar-free with its own pseudo-labels; expected "
                        "no plugins")
    require_deterministic_inputs(cfg.train, "l3a")
    return L3AStrategy(options=cfg.strategy.l3a, steps=scenario.steps, feature_cache=cfg.strategy.feature_cache,
                       plugins=plugins, **kwargs)
