"""Backbone weights from a checkpoint file (`model.pretrained: PATH`), in timm's layout or in the
ASL project's (Ridnik et al.), whose TResNet-M trained on COCO is the starting point of KRT's
published numbers (reference sheet section 4b).

As KRT's loader: the weights are the file's `state_dict` or `model` entry when it has one (else
the file itself), a DataParallel `module.` prefix is dropped, and so is the classifier (`head.*`,
or the timm model's own classifier name): only the backbone is loaded. timm's `checkpoint_filter_fn`
of the backbone's family then maps older layouts to timm's (for TResNet: ASL's inplace-ABN
`conv1.0` / `conv1.1` names and batch-norm weights). A file made for a model without timm's
`body.` prefix is read with it stripped. Every backbone weight must be found, and every weight of
the file used, else one line names the first ones, with one exception: batch norm's
`num_batches_tracked` counters may be missing. The ASL checkpoint is written from inplace_abn's
layers, whose state is weight, bias, running_mean and running_var only; a missing counter keeps
the backbone's own value (0 for a fresh model). It only counts training batches: with a momentum
set, as in every timm backbone, it changes no output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from cml.core.errors import UserError


def _entries(state):
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    where = f"model.pretrained: {path}"
    try:
        state = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file, a pickle with code (weights_only refuses it), ...
        raise UserError(
            f"{where}: cannot be read as a checkpoint ({type(err).__name__}: {' '.join(str(err).split())[:160]})"
        ) from None
    state = _entries(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{where}: expected a state dict of tensors (or one under 'state_dict' or 'model')")
    own = backbone.state_dict()
    classifier = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier") or "head"
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {
        k: v for k, v in state.items() if k in own or not (k.startswith("head.") or k.startswith(classifier + "."))
    }
    if not any(k.startswith("body.") for k in own):
        state = {k.removeprefix("body."): v for k, v in state.items()}
    filter_fn = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, backbone)
    counters = [k for k in own if k not in state and k.rsplit(".", 1)[-1] == "num_batches_tracked"]
    state.update({k: own[k] for k in counters})  # inplace_abn's layers have no counter (docstring)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    for keys, what in (
        (missing, "lacks the backbone weights"),
        (unexpected, "has weights the backbone lacks"),
        (wrong, "has weights of another shape"),
    ):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise UserError(
                f"{where}: {what} {', '.join(keys[:3])}{more}; a checkpoint of another "
                f"model than {type(backbone).__name__}?"
            )
    backbone.load_state_dict(state)
