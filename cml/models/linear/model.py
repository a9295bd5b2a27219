"""Baseline: a timm backbone's pooled feature and one growing linear head (one logit per class).

`head_init`: `prior` starts every new class's bias at logit(0.05), so that a new class begins near
the positive rate of a typical label; `default` is nn.Linear's own initialisation, as PRS's code;
`normal` is KRT's POD baseline (their TResNet redraws its Linear N(0, 0.01) and leaves the bias at
nn.Linear's, near 0; `add_classes` appends default nn.Linear rows): the first step's weights
N(0, 0.01), everything else nn.Linear's."""

from __future__ import annotations

import torch

from cml.models._base import MultiLabelModel
from cml.models._parts import PRIOR, GrowingLinear, create_backbone, feature_dim


class LinearModel(MultiLabelModel):
    def __init__(self, backbone: str, pretrained: bool | str = False, num_classes: int = 0, head_init: str = "prior"):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained)
        self.head = GrowingLinear(
            feature_dim(self.backbone),
            num_classes,
            PRIOR if head_init == "prior" else None,
            first_std=0.01 if head_init == "normal" else None,
        )

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_head(features, pre_logits=True))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled feature (what a frozen-backbone strategy caches)."""
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def classify(self, embedding: torch.Tensor) -> dict:
        return {"logits": self.head(embedding), "label_features": None}

    def forward_outputs(self, x: torch.Tensor) -> dict:
        return self.classify(self.embed(x))

    def reset_classifier(self, num_classes: int) -> None:
        head = GrowingLinear(self.head.in_features, num_classes, self.head.prior, first_std=self.head.first_std)
        self.head = head.to(self.head.weight.device)
