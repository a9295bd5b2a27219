"""CSC's network (CI-GCN) on any timm backbone: class-specific features by per-class spatial
attention, the growing label graph convolution (`cml.models._label_graph`), and two outputs
averaged. Trained with the `csc` plugin's losses (`cml/plugins/csc/`).

Paper: Du et al., "Confidence Self-Calibration for Multi-Label Class-Incremental Learning",
ECCV 2024. Code read: Kaile-Du/CSC, `CSC/cigcn.py` (`CI_GCN`), `CSC/CSC.py`.

As their `CI_GCN`: a 1x1 classifier on the feature map gives out1 (the spatial maximum, their
top-1 mean) and, softmaxed over positions, each class's attention; the attention pools a 1x1
projection of the map (`embed_dim`, theirs 1024 from TResNet-M's 2048) into one feature per class
v0; v2 = v0 + GCN(v0); out2_c = <w_c, v2_c> + b_c (their last_linear masked by the identity);
logits = (out1 + out2) / 2. `label_features` are v2, so LwF's feature distillation applies too.

`model.options`: `embed_dim` (1024); `init`: `authors` as their layers (the first classifier, their
`fc`, has no bias; the image-specific graph generator and out2's layer keep torch's default biases,
so A_s starts near sigmoid(0) = 0.5), `prior` as cml before issue 26 (a bias on `fc` and all three
biases at logit(0.05): A_s near 0.05, about 10x weaker). The co-occurrence statistics live in the
model (`cooccurrence`, buffers) and are filled by the `csc` plugin from each step's partial labels.
"""

from __future__ import annotations

import torch
from torch import nn

from cml.models._base import MultiLabelModel
from cml.models._label_graph import ClassIncrementalGCN, LabelCooccurrence
from cml.models._parts import (
    PRIOR,
    GrowingConv1x1,
    PerLabelLinear,
    create_backbone,
    feature_dim,
    feature_map,
    freeze_unused_by_map,
)


class CSCModel(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        embed_dim: int = 1024,
        init: str = "authors",
    ):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained)
        freeze_unused_by_map(self.backbone)  # the map is read, not timm's pooled feature
        dim = feature_dim(self.backbone)
        prior = PRIOR if init == "prior" else None  # None: nn.Linear's (= their Conv1d's) default biases
        self.classifier = GrowingConv1x1(dim, num_classes, prior, bias=init == "prior")
        self.transform = nn.Conv2d(dim, embed_dim, 1)
        self.gcn = ClassIncrementalGCN(embed_dim, num_classes, prior)
        self.last_linear = PerLabelLinear(embed_dim, num_classes, prior)
        self.cooccurrence = LabelCooccurrence(num_classes)

    @property
    def num_classes(self) -> int:
        return self.last_linear.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm's interface: the logits, or with `pre_logits` the per-class features v2."""
        return self.head_outputs(features)["label_features" if pre_logits else "logits"]

    def forward_outputs(self, x: torch.Tensor) -> dict:
        return self.head_outputs(self.forward_features(x))

    def head_outputs(self, features: torch.Tensor) -> dict:
        fmap = feature_map(self.backbone, features)
        scores = self.classifier(fmap).flatten(2)  # (B, C, HW)
        out1 = scores.amax(-1)
        attention = scores.softmax(-1)
        v0 = torch.einsum("bcn,bdn->bcd", attention, self.transform(fmap).flatten(2))
        v2 = v0 + self.gcn(v0)
        out2 = self.last_linear(v2)
        return {"logits": (out1 + out2) / 2, "label_features": v2}
