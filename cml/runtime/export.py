"""model.pt: a trained model as a researcher keeps it, apart from the training state.

After each step the run writes RUN_DIR/model.pt (`log.save_models: last`, the default: the last
completed step's), also RUN_DIR/model_step<K>.pt for every step K (`every`), or neither (`none`;
checkpoint.pt still holds the last step's weights). Each file holds plain types only, so
`torch.load(path, weights_only=True)` reads it: the weights (`model`, a state_dict on the CPU),
the `class_order` (output i is class i), the classes of each step so far (`step_classes`), the
model's outputs after each step (`head_sizes`, the last one `num_classes`: a growing head is
regrown to them before the weights load), the `step`, `n_steps`, the resolved `config` and the
`cml` version. `python -m cml eval` (cml/commands/evaluate.py) scores one again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation

import cml
from cml.config import to_dict
from cml.core.errors import UserError
from cml.models._parts import head_size
from cml.runtime.checkpoint import _shape_problem as shape_problem
from cml.runtime.files import MODEL_FILE, model_step_file, write_atomic

FILE = MODEL_FILE
FORMAT = 1
KEYS = ("format", "step", "n_steps", "model", "class_order", "step_classes", "head_sizes", "num_classes", "config")


def exported(model: torch.nn.Module, cfg, scenario, step: int) -> dict:
    """What model.pt holds for `model` after training step `step` of `scenario`."""
    names = scenario.class_names
    sizes = [head_size(scenario.benchmark.train_stream[t]) for t in range(step + 1)]
    return {
        "format": FORMAT,
        "step": step,
        "n_steps": len(scenario.steps),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_order": list(names),
        "step_classes": [[names[c] for c in s.classes] for s in scenario.steps[: step + 1]],
        "head_sizes": sizes,
        "num_classes": sizes[-1],
        "config": to_dict(cfg),
        "cml": cml.__version__,
    }


def save(run_dir: Path, model: torch.nn.Module, cfg, scenario, step: int) -> None:
    """After step `step`'s checkpoint, as `log.save_models` asks; each file written atomically."""
    if cfg.log.save_models == "none":
        return
    state = exported(model, cfg, scenario, step)
    names = [FILE, model_step_file(step)] if cfg.log.save_models == "every" else [FILE]
    for name in names:
        write_atomic(Path(run_dir) / name, lambda fh: torch.save(state, fh))


def _problem(state) -> str | None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"not a cml model file of format {FORMAT}"
    missing = [k for k in KEYS if k not in state]
    if missing:
        return f"missing {', '.join(missing)}"
    step, sizes = state["step"], state["head_sizes"]
    if not isinstance(step, int) or not isinstance(sizes, list) or len(sizes) != step + 1:
        return f"'head_sizes' should hold the outputs after each of the {step!r} + 1 steps"
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        return "'model' is not a state dict"
    return None


def _read(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, a pickle with code (weights_only refuses it), ...
        first = " ".join(str(err).split())[:200]
        raise UserError(f"{path} cannot be read ({type(err).__name__}: {first})") from None


def load(path: Path) -> dict:
    state = _read(path)
    problem = _problem(state)
    if problem:
        raise UserError(f"{path}: {problem}")
    return state


def regrow(model: torch.nn.Module, state: dict) -> None:
    """Grow `model` as training grew it, step by step to the saved `head_sizes`, with stand-ins of
    the training experiences carrying what cml's growing parts read (`head_size`, the step's
    classes, the stream's length for MULTI-LANE's lanes)."""
    index = {name: i for i, name in enumerate(state["class_order"])}
    stream = [None] * state["n_steps"]
    model.train()
    for t, (size, classes) in enumerate(zip(state["head_sizes"], state["step_classes"])):
        experience = SimpleNamespace(
            classes_in_this_experience=[index[c] for c in classes], n_outputs=size, step=t, origin_stream=stream
        )
        avalanche_model_adaptation(model, experience)


def load_into(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Regrow `model` and load the saved weights into it, strictly: another model's file, or one of
    another size, is refused in one line naming `path`."""
    regrow(model, state)
    problem = shape_problem("model", state["model"], model.state_dict())
    if problem:
        raise UserError(f"{path}: {problem}")
    model.load_state_dict(state["model"])


def from_checkpoint(path: Path, results: dict, cfg) -> dict:
    """A run without model.pt (`log.save_models: none`, an older cml): the last step's weights from
    checkpoint.pt, with the class order and steps from results.json."""
    saved = _read(path)
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("model"), dict)
        or not isinstance(saved.get("step"), int)
    ):
        raise UserError(f"{path}: not a cml checkpoint (no model weights and step)")
    step, names = saved["step"], results["class_order"]
    classes = [s["classes"] for s in results["steps"][: step + 1]]
    seen = [sum(len(c) for c in classes[: t + 1]) for t in range(len(classes))]
    return {
        "format": FORMAT,
        "step": step,
        "n_steps": results["n_steps"],
        "model": saved["model"],
        "class_order": names,
        "step_classes": classes,
        "head_sizes": [len(names) if cfg.model.outputs == "all" else n for n in seen],
        "num_classes": len(names) if cfg.model.outputs == "all" else seen[-1],
        "config": to_dict(cfg),
    }
