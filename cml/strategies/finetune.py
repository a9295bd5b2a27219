"""finetune: train on each step's data in turn, nothing to protect old classes (the lower bound)."""

from cml.core.registry import Strategy


def build(cfg, scenario, **kwargs):
    from cml.strategies._base import MultiLabelStrategy

    return MultiLabelStrategy(**kwargs)


DECLARATION = Strategy(build=build, help="each step's data in turn (lower bound)")
