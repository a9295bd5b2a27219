"""`model.pretrained` on `--resume`: the file is judged by its content, not by being there.

A run records its starting weights' SHA-256 in results.json (`pretrained`, files.weights_identity).
A resume with the same content at the path continues; other content is refused naming the file
and both digests (it would not be the same run); a file that is gone is no obstacle: the
checkpoint holds every weight of the model (checkpoint.restore loads it strictly), so the model
is built without the file, from timm's random initialisation as a path's model is before its file
is read, and the checkpoint's weights replace it. Torch-free: rank 0 checks before torch loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cml.core.errors import UserError
from cml.runtime.files import weights_identity
from cml.runtime.launch import launch_rank


def recorded_weights(run_dir: Path):
    """results.json's `pretrained`, or None where the run recorded none (an older cml, no results)."""
    try:
        results = json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return results.get("pretrained") if isinstance(results, dict) else None


def _state(pretrained: str) -> str:
    """'file', 'gone' or 'other' (a folder, ...) for the path model.pretrained names."""
    path = Path(pretrained).expanduser()
    try:
        return "file" if path.is_file() else "other" if path.exists() else "gone"
    except (OSError, ValueError):  # a name too long, ...
        return "gone"


def paths_by_content(now: dict, saved) -> dict:
    """NOW (a config as a dict) with the saved run's `model.pretrained` where both are paths: a
    moved file is no difference of the config; check_resumed_weights compares the contents."""
    old = saved.get("model") if isinstance(saved, dict) else None
    old = old.get("pretrained") if isinstance(old, dict) else None
    if isinstance(old, str) and isinstance(now["model"]["pretrained"], str):
        now = {**now, "model": {**now["model"], "pretrained": old}}
    return now


def check_resumed_weights(pretrained, run_dir: Path) -> None:
    """Refuse a resume whose `model.pretrained` file holds other weights than the run started from
    (a file that is gone is no obstacle: starting_weights)."""
    if not isinstance(pretrained, str) or _state(pretrained) == "gone":
        return
    if _state(pretrained) == "other":
        raise UserError(f"--resume: model.pretrained: {pretrained} is not a file; expected the run's weights file")
    recorded, now = recorded_weights(run_dir), weights_identity(str(Path(pretrained).expanduser()))
    if isinstance(recorded, str) and recorded.startswith("sha256:") and now != recorded:
        raise UserError(
            f"--resume: model.pretrained: {pretrained} holds other weights than {run_dir} started from "
            f"({now} now, {recorded} in its results.json); put the run's file back, or start a new run"
        )


def starting_weights(pretrained, run_dir: Path, resume: bool):
    """(the `pretrained` argument to build the model with, the identity results.json records).
    On a resume whose file is gone: False (built without the file; the checkpoint's weights are
    loaded over it) and the identity the run recorded, with a note (rank 0). On a resume of timm's
    weights (true): False too, so that a resume needs neither the hub nor its cache."""
    if pretrained is True and resume:
        return False, True
    if isinstance(pretrained, str) and resume and _state(pretrained) == "gone":
        recorded = recorded_weights(run_dir)
        if launch_rank() == 0:
            started = f" (it started from {recorded})" if isinstance(recorded, str) else ""
            print(
                f"note: model.pretrained: {pretrained} is not there; {run_dir} resumes from its checkpoint, "
                f"which holds the weights{started}",
                file=sys.stderr,
            )
        return False, recorded
    if isinstance(pretrained, str):
        return pretrained, weights_identity(str(Path(pretrained).expanduser()))
    return pretrained, weights_identity(pretrained)
