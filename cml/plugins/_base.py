"""The base class of cml's plugins: an Avalanche plugin with explicit hooks for the previous model
and for checkpoint state, named after its registered name.

- `uses_previous_model` (declared: `Plugin(uses_previous_model=True)`): the strategy keeps a
  frozen copy of the model as it was at the end of the previous step, shared by every plugin
  that declares it, with its outputs on the current batch from `strategy.previous_outputs()`.
- `checkpoint_state()` / `load_checkpoint_state(state)`: whatever the plugin must carry across a
  resume (buffers, Fishers, generators' states), saved in the checkpoint under `name`.
- `step_record()`: what the plugin adds to each step's record in results.json (pseudo's
  calibrated threshold).
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from cml.core.registry import PLUGINS


class CmlPlugin(SupervisedPlugin):
    name = ""  # the registered name, set by the registry's build
    uses_previous_model = False  # the declared fact, set by the registry's build
    kind = ""  # the declared kind (`cml.core.registry.PLUGIN_KINDS`), set by the registry's build

    def checkpoint_state(self) -> dict | None:
        """State to save (tensors, numbers, strings: `torch.load(weights_only=True)`), or None."""
        return None

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what `checkpoint_state` returned, after the model is back at the saved step."""

    def step_record(self) -> dict:
        """Entries for this step's record in results.json (after the step's evaluation)."""
        return {}


def build_plugin(name: str, cfg, scenario) -> CmlPlugin:
    return PLUGINS.get(name).build(cfg, scenario)  # named and declared by the registry's build


def build_plugins(cfg, scenario) -> list[CmlPlugin]:
    """`strategy.plugins`, in their order, each built by its declaration."""
    return [build_plugin(name, cfg, scenario) for name in cfg.strategy.plugins]
