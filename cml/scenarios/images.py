"""A torch dataset of (image, multi-hot target) pairs, read from files or from the image cache.

Images leave the dataset as uint8 (3, S, S) tensors and are normalised by the strategy on the
training device (`normalize`, with the backbone's own mean and std): a quarter of the bytes through
DataLoader workers and pinned
memory, and no float work in the loader processes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cml.core.errors import UserError
from cml.datasets.imagefiles import decode_rgb, image_error_text


def read_image(path: str, size: int) -> np.ndarray:
    """(size, size, 3) uint8: decoded, 8-bit RGB (`cml.datasets.imagefiles.to_rgb`), resized without
    keeping the aspect ratio. Images are checked before training; this error is for a file
    changed or damaged since."""
    try:
        return decode_rgb(path, size)
    except Exception as err:  # PIL raises many types on damaged files
        raise UserError(f"{path}: cannot read the image ({image_error_text(err, path)})") from None


class MultiLabelImages(Dataset):
    """Items are (uint8 image, target, row): `row` is the image's row in its split of the dataset
    (`data.train` or `data.test`), which replay buffers store instead of the image. `pixels`,
    when given, is that split's (N, S, S, 3) uint8 array (the memory-mapped cache), indexed by
    `rows`; otherwise images are decoded from `paths`."""

    def __init__(
        self,
        paths: list[str],
        targets: np.ndarray,
        image_size: int,
        augment=None,
        pixels: np.ndarray | None = None,
        rows: np.ndarray | None = None,
    ):
        self.paths = paths
        self.targets = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
        self.image_size = image_size
        self.augment = augment  # cml.scenarios.augment.Augment, or None (test images, herding)
        self.pixels = pixels
        self.rows = torch.arange(len(paths)) if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        if self.pixels is not None:
            array = np.asarray(self.pixels[self.rows[i]])
        else:
            array = read_image(self.paths[i], self.image_size)
        x = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if self.augment:
            x = self.augment(x)
        return x, self.targets[i], self.rows[i]
