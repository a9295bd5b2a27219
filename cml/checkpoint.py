"""Atomic per-step checkpoints as plain state_dicts, loaded with `weights_only=True`.

Avalanche's own checkpointing pickles the whole strategy with dill, which fails with current
torch; we keep only what a run needs to continue exactly where it stopped: the model, optimizer,
scheduler, RNG states, the results so far, and the strategy's state (the previous step's model
and every plugin's `checkpoint_state()`: replay buffers, Fisher information, ...). Plugin state
must be made of tensors, numbers, strings, lists and dicts, which `weights_only` loading accepts.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from cml.errors import UserError

FILE = "checkpoint.pt"


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, step: int, strategy, steps: list[dict]) -> None:
    state = {"step": step, "model": strategy.model.state_dict(), "optimizer": strategy.optimizer.state_dict(),
             "scheduler": strategy.scheduler.state_dict() if strategy.scheduler else None,
             "rng": rng_state(), "steps": steps, "strategy": strategy.checkpoint_state()}
    tmp = run_dir / (FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run_dir / FILE)


def load(run_dir: Path) -> dict:
    path = run_dir / FILE
    if not path.is_file():
        raise UserError(f"--resume: {path} not found: no step of this run was completed")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"--resume: {path} cannot be read ({type(err).__name__}: {err})") from None
