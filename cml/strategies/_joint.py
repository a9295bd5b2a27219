"""The plugin of the joint strategy: the step's training set becomes every step's so far."""

from avalanche.core import SupervisedPlugin


class JointData(SupervisedPlugin):
    def __init__(self, scenario):
        super().__init__()
        self.scenario = scenario

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        strategy.adapted_dataset = self.scenario.joint_dataset(strategy.experience.step)
