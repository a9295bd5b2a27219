"""The interface every cml model has: timm's, plus per-label features and model-specific losses.

- `forward(x)` returns the logits of the classes the model has (B, C), like any timm model, so
  evaluation, metrics and plugins see one tensor.
- `forward(x, full=True)` returns a dict: `logits`, `label_features` ((B, C, D), one feature per
  label, or None for models with one shared feature) and whatever else the model's own loss
  terms need (auxiliary logits, attention maps). Training calls this form; it goes through
  `model(...)` so that wrappers (DistributedDataParallel) see the call.
- `loss_terms(outputs, targets, criterion)` returns the model's extra loss terms by name (deep
  supervision, SRN's attention and fused losses, the discriminative regulariser); the strategy
  adds them to `criterion(logits, targets)`.
- Growth: heads are Avalanche `DynamicModule`s that grow to `head_size(experience)` when a
  training experience brings classes; old parameters stay bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MultiLabelModel(nn.Module):
    def forward_outputs(self, x: torch.Tensor) -> dict:
        """{"logits": (B, C), "label_features": (B, C, D) or None, ...}."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, full: bool = False):
        outputs = self.forward_outputs(x)
        return outputs if full else outputs["logits"]

    def forward_label_features(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.forward_outputs(x)["label_features"]

    def loss_terms(self, outputs: dict, targets: torch.Tensor, criterion) -> dict[str, torch.Tensor]:
        return {}

    @property
    def num_classes(self) -> int:
        raise NotImplementedError


def input_stats(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std the backbone was trained with (timm's `pretrained_cfg`): ImageNet's for
    most, none for TResNet (ASL's weights, which KRT starts from, take pixels in [0, 1])."""
    cfg = getattr(getattr(model, "backbone", model), "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    return torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
