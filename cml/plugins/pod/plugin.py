"""PODNet distillation (Douillard et al., ECCV 2020) as the POD baseline of KRT's authors (their
repository's loose files; reference sheet section 4b), on any model whose timm backbone lists its
stages (`feature_info`).

    L = sqrt(n_seen / n_increment) * (spatial_weight * spatial + flat_weight * flat)

spatial: for each distilled stage, both models' output maps are squared, summed over the height and
over the width separately, concatenated and L2-normalised per image; the mean over images of the
Euclidean distance between the previous and the current model's vectors, averaged over the stages.
flat: the mean over images of 1 - cos between the two models' pooled embeddings (the last stage's
map averaged over positions: the pre-logits of an average-pooled CNN such as TResNet-M).
Stage k is the backbone's stage of stride 2^(k+1) (1: stride 4, ..., 4: stride 32; KRT's POD
baseline distils all four, 1-4: TResNet-M's layer1-layer4, whose outputs their TResNet returns).
The stage outputs are read by forward hooks that live only from `before_forward` to
`before_backward` of a training iteration, so evaluation, herding and the frozen copy of the
model never see them. The term goes through `strategy.plugin_term`: the
authors' weights (5 and 180 beside ASL summed over 64 images per GPU) are 5/64 and 180/64 here.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from cml.core.errors import UserError
from cml.models._parts import feature_map
from cml.plugins._base import CmlPlugin
from cml.plugins.tdl.plugin import step_factor


def pod_spatial(new_maps: list[torch.Tensor], old_maps: list[torch.Tensor]) -> torch.Tensor:
    """PODNet's spatial term over (B, C, H, W) maps, averaged over the stages."""
    losses = []
    for new, old in zip(new_maps, old_maps):
        vectors = []
        for x in (new.float(), old.float()):
            a = x.pow(2)
            vectors.append(F.normalize(torch.cat([a.sum(3).flatten(1), a.sum(2).flatten(1)], dim=1), dim=1))
        losses.append((vectors[0] - vectors[1]).norm(dim=1).mean())
    return torch.stack(losses).mean()


def pod_flat(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Mean over images of 1 - cos between the pooled embeddings."""
    return (1 - F.cosine_similarity(new.float(), old.float(), dim=1)).mean()


def stage_modules(backbone: torch.nn.Module, stages: list[int]) -> list[torch.nn.Module]:
    """The backbone's modules for `stages`, then its last stage (for the pooled embedding)."""
    info = getattr(backbone, "feature_info", None) or []
    by_stride = {entry["reduction"]: entry["module"] for entry in info if entry.get("module")}
    wanted = [2 ** (k + 1) for k in stages] + [max(by_stride, default=0)]
    missing = [k for k, stride in zip(stages, wanted) if stride not in by_stride]
    if missing or not by_stride:
        raise UserError(
            f"strategy.pod.stages: the backbone {type(backbone).__name__} has no stage of stride "
            f"{', '.join(str(2 ** (k + 1)) for k in missing) or 'any'} (stages with strides: "
            f"{sorted(by_stride) or 'none listed'}); choose stages among them or another backbone"
        )
    return [backbone.get_submodule(by_stride[s]) for s in wanted]


class PodDistillation(CmlPlugin):
    def __init__(self, spatial_weight: float, flat_weight: float, stages: list[int], scenario):
        super().__init__()
        self.spatial_weight = spatial_weight
        self.flat_weight = flat_weight
        self.stages = stages
        self.scenario = scenario
        self.maps: dict[str, list] = {}
        self.handles = []

    def _watch(self, key: str, model) -> None:
        backbone = model.backbone
        self.maps[key] = []
        for module in stage_modules(backbone, self.stages):
            self.handles.append(
                module.register_forward_hook(
                    lambda _, __, out, key=key: self.maps[key].append(feature_map(backbone, out))
                )
            )

    def _unwatch(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.maps = [], {}

    def before_training_exp(self, strategy, **kwargs):
        stage_modules(strategy.core_model.backbone, self.stages)  # refuse a backbone without them, before training

    def before_forward(self, strategy, **kwargs):
        if strategy.previous_model is not None:
            self._watch("new", strategy.core_model)
            self._watch("old", strategy.previous_model)

    def before_backward(self, strategy, **kwargs):
        if not self.handles:
            return
        strategy.previous_outputs()  # runs the previous model on this batch, unless done already
        new, old = self.maps["new"], self.maps["old"]
        self._unwatch()
        step = self.scenario.steps[strategy.experience.step]
        loss = self.spatial_weight * pod_spatial(new[:-1], old[:-1]) + self.flat_weight * pod_flat(
            new[-1].mean((2, 3)), old[-1].mean((2, 3))
        )
        strategy.plugin_term(self.name, step_factor(step.n_seen, len(step.classes)) * loss)

    def after_training_exp(self, strategy, **kwargs):
        self._unwatch()
