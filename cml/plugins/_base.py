"""The base class of cml's plugins: an Avalanche plugin with explicit hooks for the previous model
and for checkpoint state, named after its registered name.

- `uses_previous_model` (declared: `Plugin(uses_previous_model=True)`): the strategy keeps a
  frozen copy of the model as it was at the end of the previous step, shared by every plugin
  that declares it, with its outputs on the current batch from `strategy.previous_outputs()`.
- `checkpoint_state()` / `load_checkpoint_state(state)`: whatever the plugin must carry across a
  resume (buffers, Fishers, generators' states), saved in the checkpoint under `name`.
- `step_record()`: what the plugin adds to each step's record in results.json (pseudo's
  calibrated threshold).
- cml's plugins act through cml's strategy (its loss door, previous model, replay rows), which
  Avalanche's own strategies (`Naive`, ...) lack: in one of those a cml plugin stops the first
  `train` or `eval`, before any batch, with one line (Avalanche's plugins work in cml's strategy).
"""

from __future__ import annotations

import functools

from avalanche.core import SupervisedPlugin

from cml.core.errors import UserError
from cml.core.registry import PLUGINS

STRATEGY_HOOKS = ("plugin_term", "previous_outputs", "mb_rows")  # what cml's strategy has and Avalanche's lack
FIRST_HOOKS = ("before_training", "before_eval")  # the first each of `train` and `eval` calls


class CmlPlugin(SupervisedPlugin):
    name = ""  # the registered name, set by the registry's build
    uses_previous_model = False  # the declared fact, set by the registry's build
    kind = ""  # the declared kind (`cml.core.registry.PLUGIN_KINDS`), set by the registry's build

    def __init_subclass__(cls, **kwargs):
        """A subclass's own first hooks check the strategy too (they need not call super())."""
        super().__init_subclass__(**kwargs)
        for hook in FIRST_HOOKS:
            if hook in cls.__dict__:
                setattr(cls, hook, _checking_strategy(cls.__dict__[hook]))

    def before_training(self, strategy, *args, **kwargs):
        require_cml_strategy(self, strategy)

    def before_eval(self, strategy, *args, **kwargs):
        require_cml_strategy(self, strategy)

    def checkpoint_state(self) -> dict | None:
        """State to save (tensors, numbers, strings: `torch.load(weights_only=True)`), or None."""
        return None

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what `checkpoint_state` returned, after the model is back at the saved step."""

    def step_record(self) -> dict:
        """Entries for this step's record in results.json (after the step's evaluation)."""
        return {}


def require_cml_strategy(plugin, strategy) -> None:
    missing = [name for name in STRATEGY_HOOKS if not hasattr(type(strategy), name)]
    if missing:
        raise UserError(
            f"plugin {plugin.name or type(plugin).__name__}: a cml plugin needs cml's strategy "
            f"(cml.MultiLabelStrategy, with {', '.join(missing)}); {type(strategy).__name__} has not: "
            "use cml.Experiment, or Avalanche's own plugins in this strategy"
        )


def _checking_strategy(hook):
    @functools.wraps(hook)
    def checked(self, strategy, *args, **kwargs):
        require_cml_strategy(self, strategy)
        return hook(self, strategy, *args, **kwargs)

    return checked


def build_plugin(name: str, cfg, scenario) -> CmlPlugin:
    return PLUGINS.get(name).build(cfg, scenario)  # named and declared by the registry's build


def build_plugins(cfg, scenario) -> list[CmlPlugin]:
    """`strategy.plugins`, in their order, each built by its declaration."""
    return [build_plugin(name, cfg, scenario) for name in cfg.strategy.plugins]
