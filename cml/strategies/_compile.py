"""`train.compile`: torch.compile of the training model's forward, falling back to eager mode.

torch.compile fails at the first call where it cannot compile (no C compiler, an unsupported
operation): training goes on in eager mode, with one warning, for the rest of the run.

Recompiles: every step brings a new model (grown heads, a new DDP wrapper) and a step's last
batch is often smaller. Compiles of all steps in one cache reached torch's recompile limit (8)
by the fifth step, after which torch runs the forward eagerly without raising. So the cache is
emptied at every step (the previous step's graphs are of a model that no longer exists), the
batch size is left to torch's automatic dynamic shapes (the second batch size compiles a graph
for any size), and torch is asked to raise instead of silently going eager when it still hits
the limit, so that the fallback below says so.
"""

from __future__ import annotations

import warnings

import torch

RAISE_AT_LIMIT = {"fail_on_recompile_limit_hit": True}  # torch's default: go eager, silently


class CompiledForward:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.compiled = None

    def wrap(self, model: torch.nn.Module) -> None:
        """At every step (a new wrapper: the heads grew); compiles at the first call."""
        if self.enabled:
            torch._dynamo.reset()
        self.compiled = torch.compile(model) if self.enabled else None

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> dict:
        if self.compiled is None:
            return model(x, full=True)
        try:
            with torch._dynamo.config.patch(RAISE_AT_LIMIT):
                return self.compiled(x, full=True)
        except Exception as err:  # dynamo and inductor raise many types
            first = (str(err).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"train.compile: torch.compile failed ({type(err).__name__}: {first}); "
                "training continues without compiling",
                stacklevel=2,
            )
            self.enabled, self.compiled = False, None
            return model(x, full=True)
