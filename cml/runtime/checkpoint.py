"""Atomic per-step checkpoints as plain state_dicts, loaded with `weights_only=True`.

Avalanche's own checkpointing pickles the whole strategy with dill, which fails with current
torch; we keep only what a run needs to continue exactly where it stopped: the model, optimizer,
scheduler, RNG states, the results so far, and the strategy's state (the previous step's model
and every plugin's `checkpoint_state()`: replay buffers, Fisher information, ...). Plugin state
must be made of tensors, numbers, strings, lists and dicts, which `weights_only` loading accepts.

Writing: the free space is checked first (the new file is written beside the old one, which
stays valid until the new one is complete and renamed over it; see `cml.runtime.files.write_atomic`).
Reading: the file's format VERSION, its keys, its step and the shapes of every saved weight are
checked against this run before anything is loaded, so that a file from another run, another
version or a damaged one gets one line saying what is wrong.

The data a checkpoint refers to are identified by `cml.runtime.data_identity`. Avalanche's clock
counters (CLOCK) are saved too, so metrics plotted against `train_iterations` (TensorBoard's
epoch loss) continue their axis after a resume instead of starting again at 0 (a checkpoint of
an older cml, without them, leaves the clock at 0).
"""

from __future__ import annotations

import random
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from cml.core.errors import UserError
from cml.evaluation.results import STEP_KEYS
from cml.plugins._base import CmlPlugin
from cml.runtime import distributed
from cml.runtime.data_identity import content_digest as content_digest  # re-exported: compare, run
from cml.runtime.data_identity import data_identity as data_identity
from cml.runtime.data_identity import data_problem
from cml.runtime.files import CHECKPOINT_FILE, storage_error, write_atomic

FILE = CHECKPOINT_FILE
VERSION = 1  # bump when the layout below changes
KEYS = ("version", "step", "model", "optimizer", "scheduler", "rng", "steps", "strategy")
CLOCK = ("train_iterations", "train_exp_counter", "total_iterations")  # Avalanche's run-long counters
RECORD_KEYS = ("classes", "n_train", "n_test", "step_map", "classes_without_positive", *STEP_KEYS)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }
    if torch.cuda.is_available():  # this process's GPU only: a resume may see fewer of them
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def rank_rng_states() -> list[dict]:
    """Every rank's RNG state, in rank order: a collective, so every rank calls it before rank 0
    saves. Ranks draw different amounts of randomness (their slices' flips, the passes over
    augmented images): with rank 0's state alone, every rank drew rank 0's numbers after a resume
    and the resumed run was another run (issue 28: KRT demo 52.20 vs 57.81 with 2 processes)."""
    return distributed.all_gather_object(rng_state())


def restore_rank_rng(state: dict) -> None:
    """This rank's saved RNG state; a resume under another number of processes continues with
    rank r's state for r < the saved count, else rank 0's, and says it is not the same run."""
    saved = state.get("rank_rng") or [state["rng"]]  # an older checkpoint: rank 0's only
    if len(saved) != distributed.world() and distributed.is_main():
        warnings.warn(
            f"--resume: the checkpoint holds the random state of {len(saved)} process(es), this run has "
            f"{distributed.world()}: it continues, but not as the uninterrupted run would",
            stacklevel=2,
        )
    set_rng_state(saved[distributed.rank()] if distributed.rank() < len(saved) else saved[0])


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if isinstance(saved, (list, tuple)):  # an older checkpoint: every GPU it saw, in index order
            index = torch.cuda.current_device()
            saved = saved[index] if index < len(saved) else None
        if saved is not None:
            torch.cuda.set_rng_state(saved)


def stored_bytes(obj) -> int:
    """What torch.save writes for the tensors in `obj`: each storage once, whole."""
    storages: dict[tuple, int] = {}

    def visit(x) -> None:
        if isinstance(x, torch.Tensor):
            storage = x.untyped_storage()
            storages[(x.device.type, storage.data_ptr())] = storage.nbytes()
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)

    visit(obj)
    return sum(storages.values())


def save(run_dir: Path, step: int, strategy, steps: list[dict], data: dict | None = None, rng=None) -> None:
    """`data`: the `data_identity` of the run's data, checked on --resume; `rng`: every rank's RNG
    state (`rank_rng_states()`, gathered by all ranks), else this process's."""
    rng = rng or [rng_state()]
    state = {
        "version": VERSION,
        "step": step,
        "model": strategy.core_model.state_dict(),
        "optimizer": strategy.optimizer.state_dict(),
        "scheduler": strategy.scheduler.state_dict() if strategy.scheduler else None,
        "rng": rng[0],
        "rank_rng": rng,
        "steps": steps,
        "strategy": strategy.checkpoint_state(),
        "data": data,
        "clock": {name: int(getattr(strategy.clock, name)) for name in CLOCK},
    }
    path = Path(run_dir) / FILE
    need = int(stored_bytes(state) * 1.01) + (1 << 20)  # + pickled records, zip headers
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError as err:
        raise storage_error(run_dir, err, "cannot read the free space") from None
    if need > free:
        raise UserError(
            f"{path}: the checkpoint of step {step} needs {need / 2**20:.1f} MiB but "
            f"{run_dir} has {free / 2**20:.1f} MiB free (No space left on device); "
            f"free some space, then continue with --resume"
        )
    write_atomic(path, lambda fh: torch.save(state, fh))


def _problem(state, n_steps: int) -> str | None:
    """What makes a loaded checkpoint unusable for a run of `n_steps` steps, or None."""
    if not isinstance(state, dict):
        return f"expected a cml checkpoint (a dict), found a {type(state).__name__}"
    if state.get("version") != VERSION:
        found = "none (an older cml?)" if "version" not in state else repr(state["version"])[:40]
        return f"unknown checkpoint format version {found}; this cml reads version {VERSION}"
    missing = [k for k in KEYS if k not in state]
    if missing:
        return f"missing {', '.join(missing)}"
    step, steps = state["step"], state["steps"]
    if not isinstance(step, int) or not 0 <= step < n_steps:
        return f"step {step!r} is not a step of this run (0 to {n_steps - 1})"
    if not isinstance(steps, list) or len(steps) != step + 1:
        return f"'steps' should hold the results of the {step + 1} completed steps"
    for i, record in enumerate(steps):
        if (
            not isinstance(record, dict)
            or any(k not in record for k in RECORD_KEYS)
            or not isinstance(record["step_map"], list)
            or len(record["step_map"]) <= i
        ):
            return f"the results of step {i} are incomplete"
    strategy = state["strategy"]
    if (
        not isinstance(strategy, dict)
        or "previous_model" not in strategy
        or not isinstance(strategy.get("plugins"), dict)
    ):
        return "'strategy' should hold 'previous_model' and 'plugins'"
    for rng in [state["rng"], *(state.get("rank_rng") or [])]:
        if not isinstance(rng, dict) or any(k not in rng for k in ("torch", "python", "numpy")):
            return "'rng' and 'rank_rng' should hold the torch, python and numpy states"
    data = state.get("data")
    if data is not None and not (
        isinstance(data, dict)
        and isinstance(data.get("classes"), list)
        and all(isinstance(data.get(k), torch.Tensor) for k in ("train", "test"))
    ):
        return "'data' should hold the class order and the row hashes of both splits"
    clock = state.get("clock")
    if clock is not None and not (isinstance(clock, dict) and all(isinstance(clock.get(k), int) for k in CLOCK)):
        return f"'clock' should hold the counters {', '.join(CLOCK)}"
    return None


def _shape_problem(name: str, saved, expected: dict) -> str | None:
    """How a saved state_dict differs from the model's `expected` one, or None."""
    if not isinstance(saved, dict):
        return f"'{name}' is not a state dict"
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    if missing or unexpected:
        keys, what = (missing, "lacks") if missing else (unexpected, "has unexpected")
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        return f"'{name}' {what} weights {', '.join(map(str, keys[:3]))}{more}: another model?"
    for key, tensor in expected.items():
        value = saved[key]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return (
                f"'{name}' weight {key} has shape {shape} in the checkpoint but {tuple(tensor.shape)} "
                "in this run's model: another run's checkpoint?"
            )
    return None


def load(run_dir: Path, n_steps: int) -> dict:
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise UserError(f"--resume: {path} not found: no step of this run was completed")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, a pickle with code, ... (weights_only refuses those)
        first = " ".join(str(err).split())[:200]
        raise UserError(f"--resume: {path} cannot be read ({type(err).__name__}: {first})") from None
    problem = _problem(state, n_steps)
    if problem:
        raise UserError(f"--resume: {path}: {problem}")
    return state


def check_data(run_dir: Path, state: dict, data) -> None:
    """Refuse a checkpoint made with other data (see the module docstring); warn for an old one."""
    path = Path(run_dir) / FILE
    if state.get("data") is None:
        if distributed.is_main():
            print(
                f"warning: {path} does not record the data it was made with (an older cml): the class "
                "order and the images cannot be verified",
                file=sys.stderr,
            )
        return
    problem = data_problem(state["data"], data)
    if problem:
        raise UserError(f"--resume: {path}: {problem}; restore the data it was made with, or start a new run")


def restore(run_dir: Path, state: dict, model, strategy, train_stream) -> None:
    """Regrow the model to the checkpoint's step, load it, the strategy state and the RNG states."""
    from avalanche.models.dynamic_modules import avalanche_model_adaptation

    path = Path(run_dir) / FILE
    model.train()
    for t in range(state["step"] + 1):  # regrow the head to its saved size, then load weights
        avalanche_model_adaptation(model, train_stream[t])
    expected = model.state_dict()
    previous = state["strategy"]["previous_model"]
    problem = _shape_problem("model", state["model"], expected) or (
        _shape_problem("strategy.previous_model", previous, expected) if previous is not None else None
    )
    if problem:
        raise UserError(f"--resume: {path}: {problem}")
    model.load_state_dict(state["model"])
    for plugin in strategy.plugins:
        if isinstance(plugin, CmlPlugin) and plugin.name not in state["strategy"]["plugins"]:
            raise UserError(f"--resume: {path}: no saved state for plugin {plugin.name}")
    try:
        strategy.load_checkpoint_state(state["strategy"])
        restore_rank_rng(state)
        for name, value in (state.get("clock") or {}).items():  # absent in an older cml's checkpoint
            setattr(strategy.clock, name, value)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        first = " ".join(str(err).split())[:200]
        raise UserError(
            f"--resume: {path}: the saved strategy or RNG state cannot be restored ({type(err).__name__}: {first})"
        ) from None
