"""The interface every cml model has: timm's, plus per-label features and model-specific losses.

`MultiLabelModelProtocol` is the contract as the code that uses a model relies on it (the training
template, the plugins, evaluation, the checkpoint), checked for every registered model by
tests/models/test_model_contract.py; `MultiLabelModel` is the base class that fulfils most of it.

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
- Head and backbone: `backbone` is the timm model; `named_head_parameters()` is everything else,
  told apart by object, never by a parameter-name prefix, so a model names its parts as it likes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class MultiLabelModelProtocol(Protocol):
    """What `Model.build` returns, as far as anything outside the model relies on it.

    It is also a `torch.nn.Module`, for what every module has: `named_parameters()` (the optimizer,
    EWC's Fisher by name), `state_dict()` / `load_state_dict()` (the checkpoint, the previous
    model), `train()` / `eval()`, `copy.deepcopy` (the previous step's frozen copy) and `modules()`,
    which Avalanche's `model_adaptation` walks to grow it. Members only some models have (`embed`
    and `classify` for probe and l3a, per-step tokens for tdl) are declared facts of their `Model`
    declaration, not part of this contract.
    """

    backbone: nn.Module
    """The timm model the features come from: `input_stats` reads its `pretrained_cfg` to
    normalise the images (unless the model declares `input_mean_std`), the run checks the input
    size on it before training, probe freezes it, herding pools with its `forward_head`, pod hooks
    its stages."""

    @property
    def num_classes(self) -> int:
        """C, the outputs it has after the growth so far (0 before the first step): the width of
        the logits and of a checkpoint's per-class parts, which a resumed run regrows to."""
        ...

    def forward(self, x: torch.Tensor, full: bool = False):
        """`model(x)`: the (B, C) logits, what evaluation, the metrics and pseudo-labels read.
        `model(x, full=True)`: a dict with "logits", "label_features" ((B, C, D) or None; lwf
        distils them) and whatever the model's own loss terms or a plugin read ("tokens" for tdl).
        Training and `previous_outputs()` call this form, through `model(...)` so that
        DistributedDataParallel sees the call."""
        ...

    def loss_terms(self, outputs: dict, targets: torch.Tensor, criterion) -> dict[str, torch.Tensor]:
        """The model's own loss terms by name, from `forward(x, full=True)`'s dict (deep supervision,
        SRN's branches, the discriminative regulariser): the strategy adds them to
        `criterion(logits, targets)` and reports each as `model.<name>` in the loss breakdown."""
        ...

    def named_head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of what the model adds on `backbone`: with the backbone's they
        partition `named_parameters()`. The per-class parts that grow are among them. Told apart by
        object, not by name, so that nothing (a test, a frozen-backbone strategy) guesses which
        name prefixes a model gives its heads."""
        ...


class MultiLabelModel(nn.Module):
    def forward_outputs(self, x: torch.Tensor) -> dict:
        """{"logits": (B, C), "label_features": (B, C, D) or None, ...}."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, full: bool = False):
        if x.dtype == torch.uint8:  # Avalanche code (a plugin, Naive) running it on a cml dataset
            x = normalized(x, input_stats(self))
        outputs = self.forward_outputs(x)
        return outputs if full else outputs["logits"]

    def forward_label_features(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.forward_outputs(x)["label_features"]

    def loss_terms(self, outputs: dict, targets: torch.Tensor, criterion) -> dict[str, torch.Tensor]:
        return {}

    def named_head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        backbone = {id(p) for p in self.backbone.parameters()}
        return ((name, p) for name, p in self.named_parameters() if id(p) not in backbone)

    @property
    def num_classes(self) -> int:
        raise NotImplementedError


def input_stats(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std the backbone was trained with (timm's `pretrained_cfg`): ImageNet's for
    most, none for TResNet (ASL's weights, which KRT starts from, take pixels in [0, 1]). A model
    whose authors feed other statistics declares them as `input_mean_std` ((mean, std), or None
    for the backbone's): MULTI-LANE's code gives its ViT raw [0, 1] pixels."""
    own = getattr(model, "input_mean_std", None)
    cfg = getattr(getattr(model, "backbone", model), "pretrained_cfg", None) or {}
    mean, std = own or (cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))
    return torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


def normalized(x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """uint8 images -> float, (x / 255 - mean) / std: what cml's strategy feeds every model. The
    model applies it itself to uint8 input, so that Avalanche's strategies and plugins, which run
    the model on the datasets' uint8 images, see the same inputs as cml's strategy."""
    mean, std = stats
    return (x.float().div_(255) - mean.to(x.device)) / std.to(x.device)
