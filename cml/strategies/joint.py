"""joint: at step t, train on every training image of steps 0..t with all seen labels (the upper
bound)."""

from cml.core.registry import Strategy


def build(cfg, scenario, plugins=(), **kwargs):
    from cml.strategies._base import MultiLabelStrategy
    from cml.strategies._joint import JointData

    return MultiLabelStrategy(plugins=[JointData(scenario), *plugins], **kwargs)


DECLARATION = Strategy(build=build, help="all steps' data so far (upper bound)")
