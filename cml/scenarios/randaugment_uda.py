"""RandAugment as the KRT lineage runs it: the `randaugment` package's `RandAugment` (PyPI 1.0.2,
jizongFox/pytorch-randaugment, "adapted from UDA"), imported by the training transforms of KRT
(witdsl/KRT-MLCIL), CSC (Kaile-Du/CSC) and ASL, pinned in their requirements.

Each call draws two (operation, level) pairs, uniformly and independently, from 15 operations x
levels 1-9, and applies each with probability 0.5. Level m is entry m of the package's 10-point
scale (`np.linspace(lo, hi, 10)[m]`, so level 9 is the scale's top):

| operation | value at level m | sign |
|---|---|---|
| ShearX, ShearY | 0.3 m / 9 | random |
| TranslateX, TranslateY | (150 / 331) m / 9 of the width / height | random |
| Rotate | 30 m / 9 degrees, counter-clockwise | none (the package's random sign is commented out) |
| Color, Contrast, Sharpness, Brightness | factor 1 +- 0.1 m | random |
| Posterize | bits 8, 7, 7, 6, 6, 5, 5, 4, 4 | - |
| Solarize | threshold 256 - 256 m / 9: pixels >= it are inverted | - |
| Cutout | a square of 2, 4, 7, 9, 11, 13, 16, 18, 20 pixels at any image size (*) | - |
| AutoContrast, Equalize, Invert | - | - |

(*) side rounded down to even, centred anywhere, clipped at the border, filled (125, 122, 113).

Geometric fills are grey 128. The operations are torchvision's `transforms.v2.functional` on
uint8 (3, S, S) tensors (any device); every draw comes from torch's generator. Where they cannot
be PIL's exactly: the shears interpolate bilinearly (PIL: bicubic, which torchvision has not for
tensors): the geometry and fill are the same, values agree within 2 levels on smooth content but
not on pixel-scale texture, and a pixel at the sheared border may blend image and fill;
Color, Contrast, Sharpness and AutoContrast may be one level off (torchvision floors the grey
level where PIL rounds it, and rounds its float arithmetic differently); Rotate (nearest) may take
the other neighbour where a source coordinate falls half-way (under 1% of pixels in the tests).
Translate, Brightness, Posterize, Solarize, Equalize, Invert and Cutout equal PIL's exactly.
The package itself is not a dependency: it works on PIL images only (not on the training device),
draws from Python's and NumPy's generators, and its `SubPolicy` uses `np.int`, gone since NumPy 1.24.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

OPS = (
    "Invert",
    "Cutout",
    "Sharpness",
    "AutoContrast",
    "Posterize",
    "ShearX",
    "TranslateX",
    "TranslateY",
    "ShearY",
    "Rotate",
    "Equalize",
    "Contrast",
    "Color",
    "Solarize",
    "Brightness",
)  # the package's `get_trans_list` order
LEVELS = range(1, 10)
SIGNED = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast", "Sharpness", "Brightness"})
POSTERIZE_BITS = (8, 8, 7, 7, 6, 6, 5, 5, 4, 4)  # np.round(np.linspace(8, 4, 10)), by level
CUTOUT_PIXELS = (0, 2, 4, 7, 9, 11, 13, 16, 18, 20)  # np.round(np.linspace(0, 20, 10)), by level
FILL = 128
CUTOUT_FILL = (125, 122, 113)
ENHANCE = {
    "Color": F.adjust_saturation,
    "Contrast": F.adjust_contrast,
    "Sharpness": F.adjust_sharpness,
    "Brightness": F.adjust_brightness,
}


def value(name: str, level: int) -> float:
    """The unsigned value of `name` at `level` (0-9), as the package's `SubPolicy.ranges`."""
    if name in ("ShearX", "ShearY"):
        return 0.3 * level / 9
    if name in ("TranslateX", "TranslateY"):
        return 150 / 331 * level / 9
    if name == "Rotate":
        return 30 * level / 9
    if name in ENHANCE:
        return 0.9 * level / 9
    if name == "Posterize":
        return POSTERIZE_BITS[level]
    if name == "Solarize":
        return 256 - 256 * level / 9
    if name == "Cutout":
        return CUTOUT_PIXELS[level]
    return 0.0


def apply(x: torch.Tensor, name: str, v: float) -> torch.Tensor:
    """Operation `name` with the (signed) value `v` on a uint8 (3, H, W) image, as the package's PIL
    call: shear (1, v, 0, 0, 1, 0) about the top-left corner; translate by v of the side, the
    content moving left / up for v > 0."""
    if name in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(v))
        shear = [degrees, 0.0] if name == "ShearX" else [0.0, degrees]
        return F.affine(x, 0.0, [0.0, 0.0], 1.0, shear, InterpolationMode.BILINEAR, fill=FILL, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        move = [-v * x.shape[-1], 0.0] if name == "TranslateX" else [0.0, -v * x.shape[-2]]
        return F.affine(x, 0.0, move, 1.0, [0.0, 0.0], InterpolationMode.NEAREST, fill=FILL)
    if name == "Rotate":
        return F.rotate(x, v, InterpolationMode.NEAREST, fill=FILL)
    if name in ENHANCE:
        return ENHANCE[name](x, 1.0 + v)
    if name == "Posterize":
        return F.posterize(x, int(v))
    if name == "Solarize":
        return F.solarize(x, v)
    if name == "Cutout":
        return cutout(x, int(v))
    if name == "AutoContrast":
        return F.autocontrast(x)
    if name == "Equalize":
        return F.equalize(x)
    if name == "Invert":
        return F.invert(x)
    raise ValueError(f"unknown operation {name!r}")


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """The package's `Cutout(size)`: centre (x, y) drawn in that order, `size // 2` each side, clipped."""
    height, width = x.shape[-2:]
    cx, cy = int(torch.randint(0, width, ())), int(torch.randint(0, height, ()))
    half = size // 2
    left, top = max(cx - half, 0), max(cy - half, 0)
    right, bottom = min(cx + half, width), min(cy + half, height)
    fill = torch.tensor(CUTOUT_FILL, dtype=x.dtype, device=x.device)[:, None, None]
    return F.erase(x, top, left, bottom - top, right - left, fill)


class RandAugmentUDA:
    """Two draws of (operation, level), each applied with probability 0.5 (the package's
    `RandAugment()`: a uniform pick among all pairs of (0.5, operation, level))."""

    num_ops = 2
    p = 0.5

    def draw(self) -> tuple[str, int, bool]:
        name = OPS[int(torch.randint(len(OPS), ()))]
        level = int(torch.randint(LEVELS.start, LEVELS.stop, ()))
        return name, level, bool(torch.rand(()) < self.p)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_ops):
            name, level, on = self.draw()
            if on:
                v = value(name, level)
                if name in SIGNED and torch.rand(()) < 0.5:
                    v = -v
                x = apply(x, name, v)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_ops={self.num_ops}, p={self.p}, levels 1-9 of 10)"
