"""Multi-label datasets, one file each, chosen by `data.dataset`: each declares itself
(`DECLARATION = Dataset(...)`, cml/core/registry.py) with its options at `data.<name>`.

Loaders read the dataset's own on-disk format with numpy and PIL only, so a missing or malformed
dataset is reported before the training stack (torch, Avalanche) is imported.
"""

from cml.core.registry import Dataset
from cml.core.schema import option
from cml.datasets._types import MultiLabelData, Split

__all__ = ["Dataset", "MultiLabelData", "Split", "option"]
