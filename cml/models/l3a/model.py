"""L3A's network: a timm backbone, a fixed random buffer layer that expands its pooled feature,
and the weighted analytic classifier on top (`cml.models._analytic`); trained by the `l3a`
strategy (`cml/strategies/l3a.py`), which fits the classifier in closed form, step by step.

Paper: Zhang et al., "L3A: Label-Augmented Analytic Adaptation for Multi-Label Class Incremental
Learning", ICML 2025. Code read: scut-zx/L3A (`MultiLabelIncremental_L3A.py`): after the base
step the head becomes Linear(D, Hidden, bias=False) -> ReLU -> Linear(Hidden, C, bias=False), the
first layer kept at its random initialisation (nn.Linear's U(-1/sqrt(D), 1/sqrt(D))), the last
solved in closed form. Before that, the base step may train the backbone with an ordinary linear
head (`base_head`, their `head.fc` trained with ASL); it is unused once the classifier is fitted.

`model.options`: `hidden` (their `Hidden`: 4096 as their scripts run, COCO and VOC: the argparse
default overrides the VOC yaml's 8192), `ridge` (their `rg`: 1000).
`embed(x)` (the frozen backbone's pooled feature) and `classify(embedding)` let the strategy
cache the backbone's output (`cml/strategies/_frozen.py`).

Deviations: the buffer layer is a buffer, not a parameter (it never trains), drawn from torch's
seeded generator at construction.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cml.models._analytic import AnalyticClassifier
from cml.models._base import MultiLabelModel
from cml.models._parts import GrowingLinear, create_backbone, feature_dim


class L3AModel(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        hidden: int = 4096,
        ridge: float = 1000.0,
    ):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained)
        dim = feature_dim(self.backbone)
        self.base_head = GrowingLinear(dim, num_classes)
        bound = 1 / math.sqrt(dim)
        self.register_buffer("expansion", torch.empty(hidden, dim).uniform_(-bound, bound))
        self.analytic = AnalyticClassifier(hidden, ridge, num_classes)

    @property
    def num_classes(self) -> int:
        return self.analytic.num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def expand(self, embedding: torch.Tensor) -> torch.Tensor:
        """The buffer layer: ReLU(embedding @ expansion^T), the analytic classifier's input."""
        return torch.relu(nn.functional.linear(embedding.float(), self.expansion))

    def classify(self, embedding: torch.Tensor) -> dict:
        if self.analytic.is_fitted:
            logits = self.analytic(self.expand(embedding))
        else:  # the base step's gradient training, before the first closed-form fit
            logits = self.base_head(embedding)
        return {"logits": logits, "label_features": None}

    def forward_outputs(self, x: torch.Tensor) -> dict:
        return self.classify(self.embed(x))
