"""SRN (Zhu et al., CVPR 2017): the spatial regularization network on any timm backbone.

- main branch: the backbone's pooled final feature and one classifier per label;
- from the stride-16 stage X (ResNet's res4): attention f_att (conv 1x1 512, ReLU, conv 3x3 512,
  ReLU, conv 1x1 C, softmax over space) gives maps A, a 1x1 conv gives confidence maps S, and
  y_att = sum over space of A * S is trained against the labels (weak supervision of A);
- regulariser f_sr on U = A * sigmoid(S): conv 1x1 512, ReLU, conv 1x1 512, ReLU, a grouped conv
  with 2048 filters of the map's full size in 512 groups, ReLU, a fully connected layer to C;
- prediction 0.5 * main + 0.5 * f_sr. Training: end to end, fused loss (the criterion) plus the
  main and y_att losses (`loss_terms`). Why not the paper's staged schedule: docs/models.md.

Growth appends rows to the per-class layers; the new input channels of f_sr's first conv start at
zero, so the outputs for classes already seen do not change when the model grows.
"""

from __future__ import annotations

import torch
from torch import nn

from cml.core.errors import UserError
from cml.models._base import MultiLabelModel
from cml.models._discriminative import DiscriminativeLoss
from cml.models._parts import GrowingConv1x1, GrowingInputConv1x1, GrowingLinear, create_backbone, feature_dim


def stride16_stage(backbone: nn.Module, name: str) -> int:
    """Index (in timm's `feature_info`, which `forward_intermediates` follows) of the last stage
    with reduction 16: ResNet's res4; for a ViT, whose blocks are all at 16, the last block."""
    if not hasattr(backbone, "forward_intermediates") or not getattr(backbone, "feature_info", None):
        raise UserError(
            f"model.backbone: {name!r} has no forward_intermediates/feature_info in timm; "
            f"srn needs a backbone that gives its stride-16 feature map"
        )
    reductions = [info["reduction"] for info in backbone.feature_info]
    if 16 not in reductions:
        raise UserError(
            f"model.backbone: {name!r} has no stride-16 stage (stage reductions: "
            f"{', '.join(map(str, reductions))}); srn needs one"
        )
    return len(reductions) - 1 - reductions[::-1].index(16)


class SRN(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        image_size: int | None = None,
        attention_width: int = 512,
        regularizer_width: int = 512,
        regularizer_filters: int = 2048,
        main_weight: float = 1.0,
        attention_weight: float = 1.0,
        discriminative: DiscriminativeLoss | None = None,
    ):
        """Options as declared and checked in `cml/models/srn/__init__.py`."""
        super().__init__()
        self.filters = regularizer_filters
        self.main_weight, self.attention_weight = main_weight, attention_weight
        self.discriminative = discriminative
        if image_size is None:
            raise UserError(
                "srn: image_size is required (data.image_size): the regulariser's kernel covers the whole stride-16 map"
            )
        self.backbone = create_backbone(backbone, pretrained)
        self.stage = stride16_stage(self.backbone, backbone)
        self.image_size = image_size
        self.map_size = self._map_size(backbone, image_size)
        self.map_channels = self.backbone.feature_info[self.stage]["num_chs"]
        self.attention = nn.Sequential(
            nn.Conv2d(self.map_channels, attention_width, 1),
            nn.ReLU(),
            nn.Conv2d(attention_width, attention_width, 3, padding=1),
            nn.ReLU(),
        )
        self.attention_width, self.regularizer_width = attention_width, regularizer_width
        self.regularizer = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(regularizer_width, regularizer_width, 1),
            nn.ReLU(),
            nn.Conv2d(regularizer_width, self.filters, self.map_size, groups=regularizer_width),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.reset_classifier(num_classes)

    def _map_size(self, name: str, image_size: int) -> tuple[int, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                mid = self.backbone.forward_intermediates(
                    torch.zeros(1, 3, image_size, image_size),
                    indices=[self.stage],
                    intermediates_only=True,
                    stop_early=True,
                )[0]
        except Exception as err:
            raise UserError(
                f"data.image_size: {image_size} px input cannot go through {name!r} to its stride-16 "
                f"stage ({type(err).__name__}: {str(err).splitlines()[0][:160]}); srn needs a "
                f"size the backbone accepts"
            ) from None
        finally:
            self.backbone.train(was_training)
        return tuple(mid.shape[-2:])

    @property
    def num_classes(self) -> int:
        return self.main.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """New per-class layers: main classifier, attention and confidence maps, f_sr's input and fc."""
        device = self.attention[0].weight.device
        self.main = GrowingLinear(feature_dim(self.backbone), num_classes).to(device)
        self.attention_maps = GrowingConv1x1(self.attention_width, num_classes).to(device)
        self.confidence = GrowingConv1x1(self.map_channels, num_classes).to(device)
        self.regularizer_in = GrowingInputConv1x1(self.regularizer_width, num_classes).to(device)
        self.regularizer_fc = GrowingLinear(self.filters, num_classes).to(device)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(final features as timm's forward_features gives them, the stride-16 map (B, C, H, W))."""
        final, (mid,) = self.backbone.forward_intermediates(x, indices=[self.stage])
        if tuple(mid.shape[-2:]) != self.map_size:
            raise ValueError(
                f"srn was built for {self.image_size} px inputs (a {self.map_size} stride-16 map); "
                f"this input of {tuple(x.shape[-2:])} gives {tuple(mid.shape[-2:])}"
            )
        return final, mid

    def branches(self, features: tuple[torch.Tensor, torch.Tensor]) -> dict:
        final, mid = features
        main = self.main(self.backbone.forward_head(final, pre_logits=True)).float()
        # softmax over space and the products with S in float32: bf16 sums of 784 terms lose digits
        attention = self.attention_maps(self.attention(mid)).float().flatten(2).softmax(-1)  # A (B, C, H*W)
        confidence = self.confidence(mid).float().flatten(2)  # S
        attention_logits = (attention * confidence).sum(-1)  # y_att
        weighted = (attention * confidence.sigmoid()).unflatten(2, mid.shape[-2:])  # U
        regularized = self.regularizer_fc(self.regularizer(self.regularizer_in(weighted))).float()
        # each label's feature: its attention-weighted stride-16 feature (B, C, channels)
        label_features = torch.einsum("bcn,bkn->bck", attention, mid.flatten(2).float())
        return {
            "logits": 0.5 * main + 0.5 * regularized,
            "label_features": label_features,
            "main_logits": main,
            "attention_logits": attention_logits,
            "regularized_logits": regularized,
        }

    def forward_head(self, features: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        outputs = self.branches(features)
        return outputs["label_features"] if pre_logits else outputs["logits"]

    def forward_outputs(self, x: torch.Tensor) -> dict:
        return self.branches(self.forward_features(x))

    def loss_terms(self, outputs: dict, targets: torch.Tensor, criterion) -> dict[str, torch.Tensor]:
        """The criterion scores the fused prediction; added here: the main branch and y_att
        (weights `main_weight`, `attention_weight`; 0 leaves a term out), the discriminative loss."""
        terms = {}
        if self.main_weight > 0:
            terms["main"] = self.main_weight * criterion(outputs["main_logits"], targets)
        if self.attention_weight > 0:
            terms["attention"] = self.attention_weight * criterion(outputs["attention_logits"], targets)
        if self.discriminative is not None:
            terms["discriminative"] = self.discriminative(outputs["label_features"], targets)
        return terms
