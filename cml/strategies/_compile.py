"""`train.compile`: torch.compile of the training model's forward, falling back to eager mode.

torch.compile fails at the first call where it cannot compile (no C compiler, an unsupported
operation): training goes on in eager mode, with one warning, for the rest of the run."""

from __future__ import annotations

import warnings

import torch


class CompiledForward:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.compiled = None

    def wrap(self, model: torch.nn.Module) -> None:
        """At every step (a new wrapper: the heads grew); compiles at the first call."""
        self.compiled = torch.compile(model) if self.enabled else None

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> dict:
        if self.compiled is None:
            return model(x, full=True)
        try:
            return self.compiled(x, full=True)
        except Exception as err:  # dynamo and inductor raise many types
            first = (str(err).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"train.compile: torch.compile failed ({type(err).__name__}: {first}); "
                          "training continues without compiling", stacklevel=2)
            self.enabled, self.compiled = False, None
            return model(x, full=True)
