"""What every dataset loader returns: file paths and a multi-hot label matrix per split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    paths: list[str]  # absolute image paths
    labels: np.ndarray  # (N, C) uint8 multi-hot, columns in MultiLabelData.class_names order
    ids: list  # the dataset's own image ids (COCO ids, file stems), for split files
    # (N, C) uint8: the classes for which a step selects the image, when they differ from its labels
    # (KRT's COCO loader selects by every annotation, crowd included, but labels by non-crowd ones).
    select: np.ndarray | None = None

    def __post_init__(self) -> None:
        assert self.labels.ndim == 2 and len(self.paths) == len(self.labels) == len(self.ids)
        assert self.select is None or self.select.shape == self.labels.shape

    @property
    def selection(self) -> np.ndarray:
        return self.labels if self.select is None else self.select

    def subset(self, rows: np.ndarray) -> Split:
        select = None if self.select is None else self.select[rows]
        return Split([self.paths[i] for i in rows], self.labels[rows], [self.ids[i] for i in rows], select)

    def columns(self, order: list[int]) -> Split:
        select = None if self.select is None else self.select[:, order]
        return Split(self.paths, self.labels[:, order], self.ids, select)


@dataclass
class MultiLabelData:
    name: str
    class_names: list[str]
    train: Split
    test: Split
    # What the loader left out and why ("train_missing_files": 3, ...): logged and saved in results.
    skipped: dict[str, int] = field(default_factory=dict)
    # Per test image and class, 1 where the label is to be left out of scoring (VOC "difficult").
    test_ignore: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.class_names)
        assert self.train.labels.shape[1] == n and self.test.labels.shape[1] == n
