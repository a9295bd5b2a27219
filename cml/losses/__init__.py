"""Multi-label losses, chosen by `train.loss`: one package each, whose `__init__.py` declares the
loss (options at `train.<section>`, its reduction over the batch) without torch and whose
`loss.py` implements it on the masked targets of `_masked.py`."""

from cml.core.exports import lazy_exports
from cml.core.registry import Loss
from cml.core.schema import option

__getattr__ = lazy_exports(__name__, {"masked_targets": "_masked"})  # torch-bound: loaded on first use
__all__ = ["Loss", "masked_targets", "option"]
