"""Small pieces of the training template (`_base.py`) that tests and benches use on their own:
the declared criterion, an optimizer state moved to its parameter, and a frozen model copy."""

from __future__ import annotations

import copy

import torch

from cml.core.registry import LOSSES, PLUGIN_KINDS, section_of
from cml.plugins._base import CmlPlugin


def build_criterion(train_cfg):
    declaration = LOSSES.get(train_cfg.loss)
    return declaration.build(getattr(train_cfg, section_of(declaration), None))


def state_on_device_of(param: torch.Tensor, state: dict) -> dict:
    """A parameter's optimizer state where the parameter is: a resumed optimizer's moments were
    loaded on the CPU before the model moved to the device. 0-dim entries (Adam's `step`) stay
    where they are, as torch keeps them (on the CPU unless the optimizer is capturable or fused)."""
    return {k: v.to(param.device) if isinstance(v, torch.Tensor) and v.dim() else v for k, v in state.items()}


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    copy_ = copy.deepcopy(model).eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def undeclared_previous_model(plugins) -> str:
    names = [getattr(p, "name", "") or type(p).__name__ for p in plugins]
    return (
        f"a plugin read strategy.previous_model, but none of the plugins {names} declares "
        "uses_previous_model, so the strategy keeps no previous model: add uses_previous_model=True "
        "to the reading plugin's Plugin(...) declaration"
    )


def canonical_order(plugins: list) -> list:
    """cml's plugins by kind (`PLUGIN_KINDS`), then by name, whatever the config's order; other
    plugins (Avalanche's) keep their places. Plugins in one hook run in list order, and both the
    autograd graph (the order in which gradients accumulate) and the random draws of one-shot
    passes (EWC's Fisher, herding's selection) follow it: without one order, reordering
    `strategy.plugins` changed results in the last bits and then in the digits (issue 25)."""
    ours = [p for p in plugins if isinstance(p, CmlPlugin)]
    ordered = iter(sorted(ours, key=lambda p: (PLUGIN_KINDS.index(p.kind), p.name)))
    return [next(ordered) if isinstance(p, CmlPlugin) else p for p in plugins]
