"""Training augmentation on uint8 (3, S, S) images, in the loader or on the training device.

The order is that of KRT's and ASL's training transform (resize, CutoutPIL, RandAugment), with
the random resized crop and the flip ahead of them: crop, flip, cutout, RandAugment. The crop is
torchvision's (`transforms.v2`, which work on uint8 tensors on any device); RandAugment is the
`randaugment` package's that KRT, CSC and ASL import (`train.randaugment_variant: uda`,
`cml/scenarios/randaugment_uda.py`) or torchvision's `v2.RandAugment` (`torchvision`); Cutout is
ASL's `CutoutPIL`, which torchvision does not have: a rectangle of `factor` times each side,
centred anywhere in the image and clipped at its border, filled with one random colour.
Every draw comes from torch's generator, so runs are reproducible from `seed` (DataLoader
workers get seeds derived from it).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from cml.scenarios.randaugment_uda import RandAugmentUDA


def cutout(x: torch.Tensor, factor: float) -> torch.Tensor:
    size = x.shape[-1]
    half = int(factor * size + 0.5) // 2
    cy, cx = torch.randint(0, size, (2,)).tolist()
    colour = torch.randint(0, 256, (3, 1, 1), dtype=x.dtype, device=x.device)
    x = x.clone()
    x[:, max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half] = colour
    return x


def randaugment(train_cfg):
    if not train_cfg.randaugment:
        return None
    return RandAugmentUDA() if train_cfg.randaugment_variant == "uda" else v2.RandAugment()


class Augment:
    def __init__(self, train_cfg, image_size: int, flip: bool = True):
        self.crop = (
            v2.RandomResizedCrop(image_size, scale=(train_cfg.crop_scale, 1.0), antialias=True)
            if train_cfg.crop_scale
            else None
        )
        self.flip = flip and train_cfg.hflip
        self.cutout = train_cfg.cutout
        self.randaugment = randaugment(train_cfg)

    def __bool__(self) -> bool:
        return bool(self.crop or self.flip or self.cutout or self.randaugment)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop is not None:
            x = self.crop(x)
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        if self.cutout:
            x = cutout(x, self.cutout)
        if self.randaugment is not None:
            x = self.randaugment(x)
        return x


def augment_batch(augment: Augment, x: torch.Tensor) -> torch.Tensor:
    """`augment` on each image of a (B, 3, S, S) uint8 batch where it lies (`train.augment_on_device`);
    the flip alone is one batched operation."""
    if augment.crop is None and not augment.cutout and augment.randaugment is None:
        flip = torch.rand(len(x), device=x.device) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(3), x) if augment.flip else x
    return torch.stack([augment(image) for image in x])
