"""The config's model, built from its declaration (`cml.experiment`, the tests, the benches)."""

from __future__ import annotations

import torch

from cml.config import Config
from cml.config.checks import model_options
from cml.core.registry import MODELS
from cml.models._parts import check_input_size


def build_model(cfg: Config, pretrained=None) -> torch.nn.Module:
    """The declared model with its declared options, built for `data.image_size` if it declares
    `uses_image_size` (SRN's regulariser kernel follows the input size); `pretrained` replaces
    `model.pretrained` (a resume whose weights file is gone builds without it)."""
    declaration = MODELS.get(cfg.model.name)
    image_size = cfg.data.image_size if declaration.uses_image_size else None
    weights = cfg.model.pretrained if pretrained is None else pretrained
    model = declaration.build(cfg.model.backbone, weights, model_options(cfg), image_size=image_size)
    if isinstance(getattr(model, "backbone", None), torch.nn.Module):
        check_input_size(model.backbone, cfg.model.backbone, cfg.data.image_size)
    return model
