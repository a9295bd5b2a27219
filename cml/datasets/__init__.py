"""Multi-label datasets, one file each, chosen by `data.dataset`.

Loaders read the dataset's own on-disk format with numpy and PIL only, so a missing or malformed
dataset is reported before the training stack (torch, Avalanche) is imported.
"""

from cml.registry import Registry

DATASETS = Registry("cml.datasets", "dataset")
