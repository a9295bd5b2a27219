"""A throwaway plugin as a contributor writes it: an L2 pull of the weights towards the previous
step's, matched by name through `strategy.model`. Under torchrun the strategy's model is the cml
model itself (the DDP wrapper is private to its forward), so the names match in any process
count; when `strategy.model` was the wrapper, every name had a `module.` prefix, nothing matched
and the plugin was silently finetune with 2 processes (issue 25)."""

from cml.plugins import Plugin


def build(cfg, scenario):
    from cml.plugins import CmlPlugin

    class L2ToPrevious(CmlPlugin):
        def before_backward(self, strategy, **kwargs):
            previous = strategy.previous_model
            if previous is None:
                return
            old = dict(previous.named_parameters())
            terms = [  # a grown head: its old rows
                ((p[tuple(slice(0, k) for k in old[n].shape)] - old[n]) ** 2).sum()
                for n, p in strategy.model.named_parameters()
                if n in old
            ]
            assert terms, "no parameter of the model matches the previous model's by name"
            strategy.plugin_term(self.name, 10.0 * sum(terms), per_image=False)

    return L2ToPrevious()


DECLARATION = Plugin(build=build, kind="penalty", uses_previous_model=True, help="L2 to the previous weights")
