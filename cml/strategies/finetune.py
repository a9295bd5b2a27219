"""Lower bound: train on each step's data in turn, nothing to protect old classes."""

from cml.strategies import STRATEGIES
from cml.strategies._base import MultiLabelStrategy


@STRATEGIES.register("finetune")
def finetune(scenario, **kwargs) -> MultiLabelStrategy:
    return MultiLabelStrategy(**kwargs)
