"""Continual strategies (`strategy.name`): the training template (`_base.py`) and the modules it is
split into by concern; `finetune.py` and `joint.py` declare the strategies."""

from cml.core.exports import lazy_exports
from cml.core.registry import Strategy

__getattr__ = lazy_exports(__name__, {"MultiLabelStrategy": "_base"})  # torch-bound: loaded on first use
__all__ = ["MultiLabelStrategy", "Strategy"]
