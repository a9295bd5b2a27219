"""The run directory of `cml run`: where it is, whether it may hold this run (`--resume` needs the
same config), and the command that resumes it."""

from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
import time
from pathlib import Path

from cml.config import to_dict
from cml.core import safeyaml
from cml.core.errors import UserError
from cml.runtime.files import CHECKPOINT_FILE, storage_error
from cml.runtime.launch import launch_rank
from cml.runtime.starting_weights import check_resumed_weights, paths_by_content

MARKERS = (CHECKPOINT_FILE, "results.json")


ABSENT = object()  # a key the saved config.yaml does not have (or the current config no longer has)


def first_difference(now, saved, default=ABSENT, prefix: str = "") -> str | None:
    """The first key whose value differs between the current config and the run's saved one.

    A key absent from the saved config.yaml (the run was started by a cml that did not have it)
    is no difference when its value now is its default, taken as the behaviour the old cml had."""
    if isinstance(now, dict) and isinstance(saved, dict):
        for key in sorted(set(now) | set(saved)):
            below = default.get(key, ABSENT) if isinstance(default, dict) else ABSENT
            found = first_difference(now.get(key, ABSENT), saved.get(key, ABSENT), below, f"{prefix}{key}.")
            if found:
                return found
        return None
    if saved is ABSENT:
        if default is not ABSENT and now == default:
            return None
        return f"{prefix[:-1]} (not in the run's config.yaml, {now!r} now)"
    if now is ABSENT:
        now = None
    return None if now == saved else f"{prefix[:-1]} ({saved!r} in the run, {now!r} now)"


def as_it_ran(saved):
    """The saved config with keys it predates filled in where their default is not what that run did:
    `train.randaugment_variant` (issue 26, default "uda"): a run saved without it and with
    `train.randaugment: true` ran torchvision's RandAugment; `data.jpeg_draft` (default false): a
    run saved without it decoded JPEGs in draft mode."""
    train = saved.get("train") if isinstance(saved, dict) else None
    if isinstance(train, dict) and train.get("randaugment") is True and "randaugment_variant" not in train:
        saved = {**saved, "train": {**train, "randaugment_variant": "torchvision"}}
    data = saved.get("data") if isinstance(saved, dict) else None
    if isinstance(data, dict) and "jpeg_draft" not in data and data.get("geometry", "squash") == "squash":
        saved = {**saved, "data": {**data, "jpeg_draft": True}}
    return saved


def defaults(cfg) -> dict:
    """The config's keys at their defaults, `model.options` at the model's declared ones."""
    found = to_dict(type(cfg)())
    if dataclasses.is_dataclass(cfg.model.options):
        found["model"]["options"] = dataclasses.asdict(type(cfg.model.options)())
    return found


def run_directory(args) -> Path:
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR, the run directory to continue")
    run_dir = Path(args.out) if args.out else default_out(args)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out: {run_dir} is a file; expected a directory (new or holding a run)")
    return run_dir


def default_out(args) -> Path:
    return Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_directory(args, cfg, run_dir: Path) -> None:
    """For --resume, a run of the same config; else a directory without a run."""
    if args.resume:
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            raise UserError(f"--resume: {saved_path} not found; is {run_dir} a cml run directory?")
        try:
            saved = safeyaml.load(saved_path.read_bytes(), str(saved_path))
        except OSError as err:
            raise storage_error(saved_path, err, "cannot read") from None
        saved = as_it_ran(saved)
        diff = first_difference(paths_by_content(to_dict(cfg), saved), saved, defaults(cfg))
        if diff:
            raise UserError(
                f"--resume: the config differs from the one {run_dir} was started with: {diff}; resume with "
                f"the run's value, edit {saved_path} if the change is meant for the rest of the run, or start "
                "a new run (another --out)"
            )
        check_resumed_weights(cfg.model.pretrained, run_dir)
    elif any((run_dir / m).exists() for m in MARKERS):
        raise UserError(
            f"--out: {run_dir} already holds a run; add --resume to continue it, or choose another directory"
        )


def resume_command(args, run_dir: Path) -> str:
    words = ["python", "-m", "cml", "run", args.config, "--out", str(run_dir), "--resume"]
    overrides = args.overrides
    if args.seeds:  # run_dir is PARENT/seed<N>, and _run_seeds appended seed=N to the overrides
        words[6:7] = [str(run_dir.parent), "--seeds", *map(str, args.seeds)]
        overrides = overrides[:-1]
    for item in overrides:
        words += ["--set", item]
    words += ["--allow-imports"] if getattr(args, "allow_imports", False) else []
    for name in getattr(args, "imports", ()):
        words += ["--import", name]
    return " ".join(shlex.quote(w) for w in words)


def lost_peer_exit(args, run_dir: Path | None, err: Exception) -> int:
    """Another rank died first: this one ends with the same resume line as for a signal, exit 2."""
    if launch_rank() != 0:
        return 2
    first = " ".join(str(err).split())[:120]
    print(
        f"error (rank 0): another process of this torchrun job stopped ({first}){where_saved(args, run_dir)}",
        file=sys.stderr,
    )
    return 2


def where_saved(args, run_dir: Path | None) -> str:
    saved = run_dir and (
        any(run_dir.parent.glob(f"seed*/{CHECKPOINT_FILE}")) if args.seeds else (run_dir / CHECKPOINT_FILE).exists()
    )
    if saved:
        return (
            f"; the completed steps are saved in {run_dir.parent if args.seeds else run_dir}; continue with: "
            f"{resume_command(args, run_dir)}"
        )
    return "; no step was completed, nothing to resume"


def interrupted_exit(args, run_dir: Path | None, signum: int) -> int:
    name = signal.Signals(signum).name
    if launch_rank() != 0:  # torchrun stops every rank together: one message, from rank 0
        return 128 + signum
    print(f"{chr(10) if sys.stderr.isatty() else ''}interrupted by {name}{where_saved(args, run_dir)}", file=sys.stderr)
    return 128 + signum
