"""DR (after Hassanin et al., arXiv 2107.11159): class-specific features plus a discriminative
regulariser that pulls features of one class together and pushes different classes apart.

The paper's exact layers and loss were not found; cml's choices (docs/models.md):
- class-specific features: the backbone map is projected to `embed_dim` (a 1x1 conv), each class
  pools it with its own spatial attention (softmax over positions of <a_c, v_hw> / sqrt(D)), and
  a per-class channel gate sigmoid(g_c) selects the channels of that class, so the features of
  the classes of one image differ even where the map has a single position (small inputs);
- each class feature is scored by its own classifier;
- the regulariser is the supervised contrastive loss of `_discriminative.py` over the features of
  the positive labels of a batch, on by default (`discriminative: {weight: 0}` turns it off).
Every per-class part acts on its own class only, so growing leaves old outputs unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cml.models._base import MultiLabelModel
from cml.models._discriminative import DiscriminativeLoss
from cml.models._parts import GrowingVectors, PerLabelLinear, create_backbone, feature_map, freeze_unused_by_map


class DR(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        embed_dim: int = 256,
        discriminative: DiscriminativeLoss | None = None,
    ):
        """Options as declared in `cml/models/dr/__init__.py` (the regulariser is on by default)."""
        super().__init__()
        self.embed_dim = embed_dim
        self.discriminative = discriminative
        self.backbone = create_backbone(backbone, pretrained)
        freeze_unused_by_map(self.backbone)  # the map is read, not timm's pooled feature
        self.project = nn.Linear(self.backbone.num_features, embed_dim)
        self.reset_classifier(num_classes)

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        device = self.project.weight.device
        self.attention = GrowingVectors(self.embed_dim, num_classes).to(device)
        self.gates = GrowingVectors(self.embed_dim, num_classes).to(device)
        self.classifier = PerLabelLinear(self.embed_dim, num_classes).to(device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def label_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, D): class c's attention-pooled, gated feature."""
        values = self.project(feature_map(self.backbone, features).flatten(2).transpose(1, 2))  # (B, N, D)
        scores = torch.einsum("cd,bnd->bcn", self.attention.weight, values) / math.sqrt(self.embed_dim)
        pooled = torch.einsum("bcn,bnd->bcd", scores.float().softmax(-1), values)  # softmax in float32
        return pooled * torch.sigmoid(self.gates.weight)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        label_features = self.label_features(features)
        return label_features if pre_logits else self.classifier(label_features)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        label_features = self.label_features(self.forward_features(x))
        return {"logits": self.classifier(label_features), "label_features": label_features}

    def loss_terms(self, outputs: dict, targets: torch.Tensor, criterion) -> dict[str, torch.Tensor]:
        if self.discriminative is None:
            return {}
        return {"discriminative": self.discriminative(outputs["label_features"], targets)}
