"""Upper bound: at step t, train on every training image of steps 0..t with all seen labels."""

from avalanche.core import SupervisedPlugin

from cml.strategies import STRATEGIES
from cml.strategies._base import MultiLabelStrategy


class JointData(SupervisedPlugin):
    def __init__(self, scenario):
        super().__init__()
        self.scenario = scenario

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        strategy.adapted_dataset = self.scenario.joint_dataset(strategy.experience.step)


@STRATEGIES.register("joint")
def joint(scenario, plugins=(), **kwargs) -> MultiLabelStrategy:
    return MultiLabelStrategy(plugins=[JointData(scenario), *plugins], **kwargs)
