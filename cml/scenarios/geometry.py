"""`data.geometry`: how an image file becomes the model's S x S input.

- `squash` (default): every image decoded in full and resized to S x S without keeping its aspect
  ratio (bilinear), for training and testing alike: KRT's, CSC's, PRS's and L3A's `Resize((S, S))`
  (`data.jpeg_draft: true` lets the JPEG decoder downscale first: faster, a few grey levels off).
  Training crops (`train.crop_scale`) are then taken from that square.
- `keep_aspect`: MULTI-LANE's `build_transform` (tdemin16/multi-lane `multi_lane/datasets.py`,
  DeiT's): a training crop is taken from the original image (`RandomResizedCrop(S, scale=
  (crop_scale, 1), ratio=(3/4, 4/3))`, so its scale and aspect are relative to the original), and a
  test image is resized on its shorter side to `data.test_resize` (bicubic; their
  `int(256 / 224 * S)`, 256 at 224) and centre-cropped to S. A training image seen without its crop
  (`train.crop_scale: null`, herding's feature pass, cached frozen features) gets the test view:
  what torchvision's recipes use wherever an image is not augmented. Their branch for inputs of 32
  px or less (no resize: CIFAR's own size) is not followed; every input here is S x S.

The test view is torchvision's resize and centre crop on the PIL image, as in their code, so it
equals theirs pixel for pixel (tests/scenarios/test_geometry.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode, functional

from cml.core.errors import UserError
from cml.datasets.imagefiles import decode_rgb, image_error_text, open_image, to_rgb


def default_test_resize(size: int) -> int:
    """MULTI-LANE's (and DeiT's) shorter side for an S px test crop: 256 at 224."""
    return int((256 / 224) * size)


def centre_view(img: Image.Image, size: int, resize: int) -> np.ndarray:
    """(size, size, 3): the shorter side resized to `resize` (bicubic), then the centre square, by
    torchvision's own functions on the PIL image, as their `Resize(resize, 3)` + `CenterCrop(size)`."""
    resized = functional.resize(img, resize, InterpolationMode.BICUBIC)
    return np.asarray(functional.center_crop(resized, [size, size]))


def decode_original(path: str) -> np.ndarray:
    """(H, W, 3) uint8 at the file's own size, 8-bit RGB (`to_rgb`), decoded in full."""
    with open_image(path) as img:
        return np.asarray(to_rgb(img))


def read_checked(path: str, decode, *args) -> np.ndarray:
    """Images are checked before training; this error is for a file changed or damaged since."""
    try:
        return decode(path, *args)
    except Exception as err:  # PIL raises many types on damaged files
        raise UserError(f"{path}: cannot read the image ({image_error_text(err, path)})") from None


def _centre_file(path: str, size: int, resize: int) -> np.ndarray:
    with open_image(path) as img:
        return centre_view(to_rgb(img), size, resize)


@dataclass(frozen=True)
class Geometry:
    kind: str  # "squash" | "keep_aspect"
    size: int
    test_resize: int = 0  # keep_aspect: the shorter side before the centre crop
    jpeg_draft: bool = False  # squash: `data.jpeg_draft`

    @classmethod
    def of(cls, data_cfg) -> Geometry:
        if data_cfg.geometry == "squash":
            return cls("squash", data_cfg.image_size, jpeg_draft=data_cfg.jpeg_draft)
        return cls("keep_aspect", data_cfg.image_size, data_cfg.test_resize or default_test_resize(data_cfg.image_size))

    @property
    def train_originals(self) -> bool:
        """Whether training images are kept at their own size (cropped to S later)."""
        return self.kind == "keep_aspect"

    def cache_tag(self) -> str:
        """The S x S view's name in cache keys and file names ('' for the squash with JPEG drafts,
        cml's only view before 2026-12-03, so caches built then are still found)."""
        if self.kind == "squash":
            return "" if self.jpeg_draft else "full-"
        return f"centre{self.test_resize}-"

    def view(self, path: str) -> np.ndarray:
        """The S x S image of `path`: squashed, or the test view."""
        if self.kind == "squash":
            return read_checked(path, decode_rgb, self.size, self.jpeg_draft)
        return read_checked(path, _centre_file, self.size, self.test_resize)

    def read(self, path: str, split: str) -> np.ndarray:
        """The image as split `split` ("train" or "test") stores it: S x S, or a training original."""
        if split == "train" and self.train_originals:
            return read_checked(path, decode_original)
        return self.view(path)

    def fit(self, original: np.ndarray) -> np.ndarray:
        """A training original seen without its random crop: the test view."""
        return centre_view(Image.fromarray(original), self.size, self.test_resize)


def as_geometry(geometry: Geometry | int) -> Geometry:
    """An int S is the squash geometry at S."""
    return geometry if isinstance(geometry, Geometry) else Geometry("squash", int(geometry))
