"""A throwaway plugin that pulls the weights towards the previous step's but forgets to declare
`uses_previous_model`: the strategy refuses its read instead of leaving it silently inert."""

from cml.plugins import Plugin


def build(cfg, scenario):
    from cml.plugins import CmlPlugin

    class L2ToPrevious(CmlPlugin):
        def before_backward(self, strategy, **kwargs):
            previous = strategy.previous_model  # refused: no plugin declares uses_previous_model
            if previous is not None:
                strategy.plugin_term(self.name, 0.0 * strategy.mb_outputs["logits"].sum())

    return L2ToPrevious()


DECLARATION = Plugin(build=build, help="reads previous_model without declaring it")
