"""A throwaway plugin declared in one file outside cml (imported through the config's `imports:`):
it counts the training iterations, and its count is checkpoint state."""

from dataclasses import dataclass

from cml.plugins import Plugin, option


@dataclass
class CounterOptions:
    every: int = option(1, low=1, help="count every n-th iteration")


def build(cfg, scenario):
    from cml.plugins import CmlPlugin  # torch and Avalanche: only when the plugin is built

    class Counter(CmlPlugin):
        def __init__(self, every: int):
            super().__init__()
            self.every, self.count = every, 0

        def after_training_iteration(self, strategy, **kwargs):
            self.count += strategy.clock.train_exp_iterations % self.every == 0

        def checkpoint_state(self):
            return {"count": self.count}

        def load_checkpoint_state(self, state):
            self.count = state["count"]

    return Counter(cfg.strategy.ext_plugin.every)


DECLARATION = Plugin(build=build, options=CounterOptions, help="counts training iterations")
