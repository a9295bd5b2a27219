"""A torch dataset of (image, multi-hot target) pairs, read from files or from the image cache.

Images leave the dataset as uint8 (3, S, S) tensors (made S x S by `data.geometry`,
`cml.scenarios.geometry`) and are normalised on the training device
(`cml.models._base.normalized`): a quarter of the bytes through DataLoader workers and pinned
memory, and no float work in the loader processes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cml.scenarios.geometry import Geometry, as_geometry


def read_image(path: str, size: int) -> np.ndarray:
    """(size, size, 3) uint8: decoded, 8-bit RGB, resized without keeping the aspect ratio (the
    squash geometry, `cml.scenarios.geometry`)."""
    return Geometry("squash", size).view(path)


class MultiLabelImages(Dataset):
    """Items are (uint8 image, target, row): `row` is the image's row in its split of the dataset
    (`data.train` or `data.test`), which replay buffers store instead of the image. `pixels`,
    when given, is that split's cache (`cml.scenarios.cache`), indexed by `rows`; otherwise images
    are decoded from `paths` by `geometry` (an int S: squashed to S x S) as split `split` stores
    them. A training original (keep_aspect) leaves as S x S through the augmentation's crop, or,
    without one, as the test view."""

    def __init__(
        self,
        paths: list[str],
        targets: np.ndarray,
        geometry: Geometry | int,
        augment=None,
        pixels=None,
        rows: np.ndarray | None = None,
        split: str = "train",
    ):
        self.paths = paths
        self.targets = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
        self.geometry = as_geometry(geometry)
        self.split = split
        self.augment = augment  # cml.scenarios.augment.Augment, or None (test images, herding)
        self.pixels = pixels
        self.rows = torch.arange(len(paths)) if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        if self.pixels is not None:
            array = np.asarray(self.pixels[int(self.rows[i])])
        else:
            array = self.geometry.read(self.paths[i], self.split)
        if self.split == "train" and self.geometry.train_originals and not (self.augment and self.augment.crop):
            array = self.geometry.fit(array)
        x = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if self.augment:
            x = self.augment(x)
        return x, self.targets[i], self.rows[i]
