"""Pieces the cml models share: a timm backbone by name and its feature map, and the per-class
layers that grow (classifiers, queries, 1x1 convolutions)."""

from __future__ import annotations

import math

import torch
from avalanche.models import DynamicModule
from torch import nn

from cml.core.errors import UserError
from cml.core.hints import did_you_mean

PRIOR = 0.05  # initial positive probability of a new class (bias = logit(PRIOR))


def create_backbone(name: str, pretrained: bool | str = False, **kwargs) -> nn.Module:
    """A timm model without classifier; `pretrained` is False, True (timm's weights) or a file
    (timm's layout or the ASL project's: `cml/models/_weights.py`). NAME may carry timm's weight
    tag (`vit_base_patch16_224.augreg_in21k_ft_in1k`): true loads those weights, and the tag's
    `pretrained_cfg` (input statistics) holds whatever `pretrained` is."""
    import timm

    if not timm.is_model(name):
        raise UserError(f"model.backbone: {name!r} is not a timm model{did_you_mean(name, timm.list_models(), n=3)}")
    arch, _, tag = name.partition(".")
    if tag and name not in timm.list_pretrained(name):  # is_model accepts any tag; create_model does not
        tags = timm.list_pretrained(arch + ".*")
        raise UserError(f"model.backbone: timm has no weights {tag!r} for {arch!r}{did_you_mean(name, tags, n=3)}")
    if isinstance(pretrained, str):  # timm's layout or the ASL project's (KRT's starting weights)
        from cml.models._weights import load_backbone_weights

        backbone = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        load_backbone_weights(backbone, pretrained)
        return backbone
    try:
        return timm.create_model(name, pretrained=bool(pretrained), num_classes=0, **kwargs)
    except Exception as err:  # hub errors differ between versions; all mean "no weights"
        if not pretrained:
            raise
        raise UserError(
            f"model.pretrained: could not load weights for {name!r} from the Hugging Face hub "
            f"(offline here?): "
            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}; give a local "
            f"checkpoint path or set model.pretrained: false"
        ) from None


def check_input_size(backbone: nn.Module, name: str, size: int) -> None:
    """One forward pass of a (1, 3, size, size) zero image before training: a backbone with a fixed
    input size (timm ViTs assert it) or a minimum one says so here, in one line, not at the first
    batch. In eval mode and without gradients: no statistic, weight or random state changes."""
    mode = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, size, size))
    except (AssertionError, RuntimeError, ValueError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise UserError(
            f"data.image_size: {size} is not an input size backbone {name!r} accepts ({first}); "
            "set data.image_size to one it does (e.g. its default, often 224)"
        ) from None
    finally:
        backbone.train(mode)


def full_precision(x: torch.Tensor):
    """fp32 inside an autocast region, for the classifiers: logits rounded to bf16's 8 bits tie many
    test scores (mAP moved by 0.02 on a COCO-sized test set) and fp16's saturate; the head's cost
    is small beside the backbone's."""
    return torch.autocast("cuda" if x.device.type == "cuda" else "cpu", enabled=False)


class Fp32Linear(nn.Linear):
    """nn.Linear (same parameters, same initialisation) computed in fp32 under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return nn.functional.linear(x.float(), self.weight, self.bias)


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
    New rows: nn.Linear's initialisation, biases at logit(`prior`) unless it is None; `bias=False`
    has none (CSC's first classifier); `first_std` draws the first classes' weights N(0, std^2).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int = 0,
        prior: float | None = PRIOR,
        bias: bool = True,
        first_std: float | None = None,
    ):
        super().__init__()
        self.in_features = in_features
        self.prior = prior  # None: nn.Linear's own initialisation of the biases too (PRS's code)
        self.first_std = first_std  # KRT's POD baseline: their TResNet's N(0, 0.01), later rows nn.Linear's
        self.weight = nn.Parameter(torch.empty(0, in_features))
        self.register_parameter("bias", nn.Parameter(torch.empty(0)) if bias else None)
        self.grow(num_classes)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def grow(self, num_classes: int) -> None:
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        fresh = nn.Linear(self.in_features, extra, bias=self.bias is not None)
        if self.first_std is not None and not self.num_classes:
            nn.init.normal_(fresh.weight, std=self.first_std)
        fresh = fresh.to(self.weight.device)
        if self.prior is not None and self.bias is not None:
            nn.init.constant_(fresh.bias, math.log(self.prior / (1 - self.prior)))
        self.weight = nn.Parameter(torch.cat([self.weight.data, fresh.weight.data]))
        if self.bias is not None:
            self.bias = nn.Parameter(torch.cat([self.bias.data, fresh.bias.data]))

    def adaptation(self, experience) -> None:
        if self.training:  # test experiences of seen classes never grow the head
            self.grow(head_size(experience))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return nn.functional.linear(x.float(), self.weight, self.bias)


def feature_map(backbone: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The backbone's `forward_features` output as a (B, C, H, W) map, whatever its layout:
    NCHW (CNNs), NHWC (timm models with `output_fmt == "NHWC"`: Swin, MambaOut) or tokens
    (B, N, C) of a ViT, whose prefix (class, register) tokens are dropped and the rest laid out
    on the square grid of a square input."""
    if features.ndim == 4:
        return features.permute(0, 3, 1, 2) if getattr(backbone, "output_fmt", "NCHW") == "NHWC" else features
    if features.ndim != 3:
        raise ValueError(f"backbone features of shape {tuple(features.shape)} are not a map or tokens")
    tokens = features[:, getattr(backbone, "num_prefix_tokens", 0) :]
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} patch tokens do not make a square grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def freeze_unused_by_map(backbone: nn.Module, image_size: int | None = None) -> torch.Tensor:
    """Freezes the backbone's parameters that its feature map does not depend on (timm's pooling
    head: ConvNeXt's final norm, a ViT's fc_norm) and returns the map of one blank image of
    `image_size` (default: the backbone's own input size). Models that read the map, not the
    pooled feature, call it: DistributedDataParallel needs every trained parameter to get a
    gradient, and an optimizer leaves a parameter without one untouched anyway."""
    size = image_size or (getattr(backbone, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]
    was_training = backbone.training
    fmap = feature_map(backbone, backbone.eval().forward_features(torch.zeros(1, 3, size, size)))
    trained = [p for p in backbone.parameters() if p.requires_grad]
    grads = torch.autograd.grad(fmap.sum(), trained, allow_unused=True)
    for p, grad in zip(trained, grads):
        p.requires_grad_(grad is not None)
    backbone.train(was_training)
    return fmap.detach()


class PerLabelLinear(GrowingLinear):
    """One classifier per label: logit_c = <feature_c, weight_c> + bias_c on (B, C, D) features."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() * self.weight).sum(-1) + self.bias  # fp32, as every head


class GrowingConv1x1(GrowingLinear):
    """A 1x1 convolution with one output map per class (SRN's attention and confidence maps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return nn.functional.conv2d(x.float(), self.weight[:, :, None, None], self.bias)


class GrowingVectors(DynamicModule):
    """One learnable vector per class (DLFL's semantic queries, DR's attention and gates); new
    classes append rows drawn from N(0, std^2)."""

    def __init__(self, dim: int, num_classes: int = 0, std: float = 1.0):
        super().__init__()
        self.std = std
        self.weight = nn.Parameter(torch.empty(0, dim))
        self.grow(num_classes)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def grow(self, num_classes: int) -> None:
        extra = num_classes - self.num_classes
        if extra > 0:
            fresh = torch.randn(extra, self.weight.shape[1], device=self.weight.device) * self.std
            self.weight = nn.Parameter(torch.cat([self.weight.data, fresh]))

    def adaptation(self, experience) -> None:
        if self.training:
            self.grow(head_size(experience))


class GrowingInputConv1x1(DynamicModule):
    """A 1x1 convolution whose inputs are one map per class (SRN's first regulariser layer).
    New classes add input channels with zero weights, so the output for the classes already
    seen does not change when the model grows; training then moves the new weights."""

    def __init__(self, out_channels: int, num_classes: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, 0))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.grow(num_classes, init=True)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[1]

    def grow(self, num_classes: int, init: bool = False) -> None:
        """`init`: the first classes of a new module get nn.Conv2d's default initialisation."""
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        fresh = torch.zeros(self.weight.shape[0], extra, device=self.weight.device)
        if init:
            bound = 1 / math.sqrt(num_classes)
            nn.init.uniform_(fresh, -bound, bound)
            nn.init.uniform_(self.bias.data, -bound, bound)
        self.weight = nn.Parameter(torch.cat([self.weight.data, fresh], dim=1))

    def adaptation(self, experience) -> None:
        if self.training:
            self.grow(head_size(experience), init=self.num_classes == 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight[:, :, None, None], self.bias)
