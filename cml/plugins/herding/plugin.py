"""Class-incremental exemplars chosen by herding (iCaRL, Rebuffi et al., CVPR 2017): the replay of
the KRT protocol (20 exemplars per class on COCO, 2 on VOC).

At the end of each step, for each class the step brought, the model's pooled features of the
step's training images holding that class are L2-normalised and `per_class` of them are chosen
greedily, each time the image that brings the mean of the chosen features closest to the class
mean (without repetition; all of them when the class has fewer images). Multi-label images: an
image is a candidate for every new class it holds and is chosen for each class independently.
What is stored follows KRT's code (`strategy.replay.herding_repeats`): on COCO (`never`) an image
is stored once, whatever the classes and steps it was chosen for (a global set of stored images:
one chosen again in a later step is not stored twice); on VOC (`per_class`) an image chosen for k
classes is stored k times. Either way a step adds at most `per_class` x (its classes) items.
Features are computed in fp32 (no autocast), as KRT's herding. Deviation: KRT's herding loop may
pick an image twice for one class; here each pick is a new image (docs/protocols.md).
Exemplars are kept for good (memory grows with the classes, as in KRT);
`strategy.replay.size` does not apply. With `relabel` (KRT) an exemplar's targets widen to
every class from its step's first class up to the current step (see `_replay.py`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cml.plugins._replay_buffer import ReplayBuffer
from cml.runtime import distributed


def herding_selection(features: torch.Tensor, m: int) -> list[int]:
    """Indices of `m` rows of `features` chosen by herding, in the order chosen. With f the
    normalised features, mu their mean and S the sum of the k-1 chosen, step k takes
    argmin_x ||mu - (S + f_x) / k||^2, expanded so that each step is one matrix-vector product."""
    f = F.normalize(features.double(), dim=1)
    mu = f.mean(0)
    f_mu, f_norm = f @ mu, (f * f).sum(1)
    f_s = torch.zeros_like(f_mu)  # f_x . S
    s_mu, s_norm = 0.0, 0.0  # S . mu, ||S||^2
    available = torch.ones(len(f), dtype=torch.bool, device=f.device)
    chosen: list[int] = []
    for k in range(1, min(m, len(f)) + 1):
        # ||mu - (S + f)/k||^2 without the constant ||mu||^2
        distance = -2 / k * (s_mu + f_mu) + (s_norm + 2 * f_s + f_norm) / k**2
        i = int(torch.where(available, distance, torch.inf).argmin())
        chosen.append(i)
        available[i] = False
        s_norm += float(2 * f_s[i] + f_norm[i])
        s_mu += float(f_mu[i])
        f_s += f @ f[i]
    return chosen


def pooled_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's pooled image feature: its timm backbone's pre-logits when it has one (global
    pooling as the backbone defines it; the backbone's own features, not the model's: SRN's
    `forward_features` is a pair), else the mean over spatial positions or tokens."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "forward_head"):
        return backbone.forward_head(backbone.forward_features(x), pre_logits=True)
    features = model.forward_features(x)
    return features.flatten(2).mean(2) if features.dim() == 4 else features.mean(1)


class HerdingBuffer(ReplayBuffer):
    streaming = False

    def __init__(self, per_class: int, num_classes: int, seed: int, repeats: str = "never"):
        super().__init__(per_class * num_classes, num_classes, seed)
        self.per_class = per_class
        self.repeats = repeats

    @torch.no_grad()
    def step_features(self, strategy, scenario, step) -> torch.Tensor:
        """Every rank computes its part of the step's images; all of them are gathered (torchrun)."""
        part = distributed.shard(len(step.train_rows))
        images = scenario.train_images(step.train_rows[part], step.train_targets[part])
        images.augment = None
        model = strategy.core_model
        was_training = model.training
        model.eval()
        features = []
        for x, _, _ in DataLoader(images, batch_size=strategy.eval_mb_size, **strategy.pass_loader_args(images)):
            features.append(pooled_features(model, strategy.prepare_images(x)).float())  # fp32, as KRT
        model.train(was_training)
        return distributed.all_gather_cat(torch.cat(features))

    def end_of_step(self, strategy, scenario, step, first: int, batch_size: int) -> None:
        features = self.step_features(strategy, scenario, step)
        picks = []  # step images, per class in class order, each in herding order
        for c in step.classes:
            holders = np.flatnonzero(step.train_targets[:, c] == 1)
            picks += holders[herding_selection(features[holders], self.per_class)].tolist()
        if self.repeats == "never":
            stored = set(self.rows[: self.size].tolist())
            picks = [j for j in sorted(set(picks)) if step.train_rows[j] not in stored]
        for j in picks:
            target = step.train_targets[j]
            self.store(self.size, step.train_rows[j], target, target == 1, first)
