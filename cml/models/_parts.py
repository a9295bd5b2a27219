"""Pieces every cml model shares: a timm backbone by name and a classifier that grows."""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import torch
from avalanche.models import DynamicModule
from torch import nn

from cml.errors import UserError

PRIOR = 0.05  # initial positive probability of a new class (bias = logit(PRIOR))


def create_backbone(name: str, pretrained: bool | str = False, **kwargs) -> nn.Module:
    """A timm model without classifier; `pretrained` is False, True (timm's weights) or a file."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"model.backbone: {name!r} is not a timm model{hint}")
    options = dict(num_classes=0, **kwargs)
    if isinstance(pretrained, str):
        options["pretrained_cfg_overlay"] = dict(file=str(Path(pretrained).expanduser()))
    try:
        return timm.create_model(name, pretrained=bool(pretrained), **options)
    except Exception as err:  # hub errors differ between versions; all mean "no weights"
        if not pretrained:
            raise
        where = pretrained if isinstance(pretrained, str) else "the Hugging Face hub (offline here?)"
        raise UserError(f"model.pretrained: could not load weights for {name!r} from {where}: "
                        f"{type(err).__name__}: {str(err).splitlines()[0][:200]}; give a local "
                        f"checkpoint path or set model.pretrained: false") from None


def head_size(experience) -> int:
    """How many outputs a model has once it has trained on `experience`: the classes seen so far
    (`n_outputs`, set by the scenario builder; it may be all classes from the start, as in PRS's
    code), else one past the highest class of the experience."""
    return getattr(experience, "n_outputs", None) or max(experience.classes_in_this_experience) + 1


def feature_dim(backbone: nn.Module) -> int:
    return getattr(backbone, "head_hidden_size", None) or backbone.num_features


class GrowingLinear(DynamicModule):
    """A linear classifier that adds one row per new class when a training step brings classes.

    Avalanche's IncrementalClassifier masks inactive units for softmax training; multi-label
    heads need no mask, and rows of classes already seen must stay exactly as they are.
    """

    def __init__(self, in_features: int, num_classes: int = 0):
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(0, in_features))
        self.bias = nn.Parameter(torch.empty(0))
        self.grow(num_classes)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def grow(self, num_classes: int) -> None:
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        fresh = nn.Linear(self.in_features, extra).to(self.weight.device)
        nn.init.constant_(fresh.bias, math.log(PRIOR / (1 - PRIOR)))
        self.weight = nn.Parameter(torch.cat([self.weight.data, fresh.weight.data]))
        self.bias = nn.Parameter(torch.cat([self.bias.data, fresh.bias.data]))

    def adaptation(self, experience) -> None:
        if self.training:  # test experiences of seen classes never grow the head
            self.grow(head_size(experience))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)
