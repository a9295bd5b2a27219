"""`python -m cml run CONFIG [--set key=value ...] [--out DIR] [--seeds N ...] [--resume]`,
`python -m cml plan CONFIG [--set key=value ...] [--json FILE]` (the steps, without torch),
`python -m cml eval RUN_DIR [--step K] [--set eval.KEY=VALUE ...] [--config OTHER] [--json FILE]` and
`python -m cml compare RUN_DIR_OR_PARENT ... [--out FILE.png] [--json] [--format markdown|latex|csv]`.

Under torchrun (`torchrun --nproc_per_node N -m cml run CONFIG ...`, docs/scaling.md) every
process runs this; rank 0 alone checks, locks and writes the run directory.
run, plan, eval and keys take `--allow-imports` or `--import MODULE` (or CML_ALLOW_IMPORTS=1): without
them a config's `imports:` is refused, never imported (cml.config.loading).

Arguments, the config, the dataset and its images are checked before torch and Avalanche are
imported (they take seconds), so mistakes are reported at once: one line naming the file or key,
exit code 2. Exit codes (docs/reliability.md): 0 done, 2 bad input or storage, 3 training
diverged (non-finite loss), 130 SIGINT, 143 SIGTERM (completed steps kept, resumable).
"""

from __future__ import annotations

import copy
import json
import signal
import sys
import warnings
from pathlib import Path

import yaml

from cml.commands.arguments import parser
from cml.config import describe, load_config, markdown_reference, to_dict
from cml.config.loading import consent_to_imports
from cml.core.errors import TrainingDiverged, UserError
from cml.datasets.imagefiles import load_data
from cml.runtime.files import CHECKPOINT_FILE, os_error_text, storage_error, write_text_atomic
from cml.runtime.launch import check_launch, launch_rank, launched, peer_lost, torchrun_environment
from cml.runtime.lock import RunLock
from cml.runtime.run_directory import (
    MARKERS,
    check_run_directory,
    default_out,
    interrupted_exit,
    lost_peer_exit,
    run_directory,
)
from cml.runtime.signals import received_signal, stop_signals_raise


def _one_line(err: UserError) -> str:
    """The message; for an error raised in a DataLoader worker, which torch re-raises with the
    worker's traceback in it, the original message (the traceback's last line)."""
    text = str(err)
    if text.startswith("Caught ") and "\n" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text.replace("\n", "\\n")


class _Session:
    """What the error messages need to know about the run in progress, and the dataset, which
    the seeds of one command share."""

    run_dir: Path | None = None
    lock: RunLock | None = None
    data = None


class _StoppedOnRank0(UserError):
    """Rank 0 refused the run directory and said why; the other ranks leave quietly."""


def _start(args, session: _Session):
    """Under torchrun, rank 0 alone checks, locks and creates the run directory, then tells the
    others its path (or that it stopped); they load the data after it."""
    check_launch()
    cfg = load_config(args.config, args.overrides, resume=args.resume)
    if not launched():
        return (cfg, *_prepare(args, session, cfg))
    import cml.commands.run  # noqa: F401  Avalanche makes a logger at import, refused off rank 0 once the group exists
    from cml.runtime import distributed

    distributed.init(cfg.train.device)
    outcome = None
    if distributed.is_main():
        try:
            data, run_dir = _prepare(args, session, cfg)
        except UserError as err:
            distributed.broadcast_object(err.exit_code)
            raise
        outcome = str(run_dir)
    shared = distributed.broadcast_object(outcome)
    if isinstance(shared, int):
        err = _StoppedOnRank0()
        err.exit_code = shared
        raise err
    if not distributed.is_main():
        run_dir = session.run_dir = Path(shared)
        data = session.data = session.data or load_data(cfg.data)
    return cfg, data, run_dir


def _prepare(args, session: _Session, cfg):
    run_dir = session.run_dir = run_directory(args)
    if run_dir.is_dir():  # lock before looking inside: a run in progress is named with its pid
        session.lock = RunLock(run_dir)
    check_run_directory(args, cfg, run_dir)
    data = session.data = session.data or load_data(cfg.data)
    if session.lock is None:  # a new directory, made only now that the data are known to be good
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise storage_error(run_dir, err, "cannot create the run directory") from None
        session.lock = RunLock(run_dir)
        check_run_directory(args, cfg, run_dir)  # another run may have used it in the meantime
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return data, run_dir


def _run_seeds(args) -> int:
    """One run per seed in PARENT/seed<N>; `--resume` continues the seeds that completed a step,
    starts the others and leaves out the finished ones, once every seed's run directory holds
    a run of the same config (checked first, as a plain --resume checks its one directory)."""
    if args.resume and not args.out:
        print("error: --resume needs --out PARENT, the folder of the seeds' run directories", file=sys.stderr)
        return 2
    parent = Path(args.out) if args.out else default_out(args)
    session = _Session()
    runs = []
    for seed in dict.fromkeys(args.seeds):
        one = copy.copy(args)
        one.out, one.overrides = str(parent / f"seed{seed}"), [*args.overrides, f"seed={seed}"]
        runs.append(one)
    try:
        finished = [args.resume and _finished(Path(one.out)) for one in runs]
        if args.resume:
            for one in runs:
                _check_seed_config(one)
    except UserError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return err.exit_code
    for one, done in zip(runs, finished):
        if done:
            print(f"{one.out}: finished, nothing to resume")
            continue
        one.resume = args.resume and _is_file(Path(one.out) / CHECKPOINT_FILE)
        code = _run(one, session)
        if code:
            return code
        session.run_dir = session.lock = None
    return 0


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as err:  # a name too long, ...
        raise storage_error(path, err, "cannot read") from None


def _check_seed_config(one) -> None:
    """A seed's run directory that holds a run (finished or with a checkpoint) must be of this config."""
    run_dir = Path(one.out)
    if _is_file(run_dir / "config.yaml") and any(_is_file(run_dir / m) for m in MARKERS):
        resumed = copy.copy(one)
        resumed.resume = True
        check_run_directory(resumed, load_config(one.config, one.overrides, resume=True), run_dir)


def _finished(run_dir: Path) -> bool:
    """results.json says every step is done (one that cannot be read or lacks keys: not finished)."""
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(results, dict)
        and isinstance(results.get("steps"), list)
        and isinstance(results.get("n_steps"), int)
        and len(results["steps"]) == results["n_steps"]
    )


def _run(args, session: _Session | None = None) -> int:
    session = session or _Session()
    try:
        with stop_signals_raise():
            try:
                cfg, data, run_dir = _start(args, session)
                # qpsolvers, imported by Avalanche, warns on every start that it found no QP solver
                warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)
                from cml.commands.run import run  # the heavy imports: torch, timm, Avalanche

                run(cfg, data, run_dir, resume=args.resume)
            finally:
                if session.lock is not None:
                    session.lock.release()
    except UserError as err:
        if isinstance(err, _StoppedOnRank0):
            return err.exit_code
        message = _one_line(err)
        run_dir = session.run_dir
        if isinstance(err, TrainingDiverged) and run_dir and (run_dir / CHECKPOINT_FILE).exists():
            message += f"; the completed steps are saved in {run_dir}"
        where = f" (rank {launch_rank()})" if torchrun_environment() else ""
        print(f"error{where}: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        return interrupted_exit(args, session.run_dir, getattr(err, "signum", signal.SIGINT))
    except OSError as err:  # writes outside cml's own (TensorBoard's, a full disk under the cache)
        print(f"error: {err.filename or 'a file'}: {os_error_text(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        if received_signal() is not None:  # e.g. a DataLoader worker stopped by the same signal first
            return interrupted_exit(args, session.run_dir, received_signal())
        if peer_lost(err):
            return lost_peer_exit(args, session.run_dir, err)
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if hasattr(args, "allow_imports"):  # run, plan, keys; every torchrun rank parses the same arguments
        try:
            consent_to_imports(args.allow_imports, args.imports)
        except UserError as err:
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return err.exit_code
    if args.command == "keys":
        if args.config:
            try:
                load_config(args.config)
            except UserError as err:
                print(f"error: {_one_line(err)}", file=sys.stderr)
                return err.exit_code
        if args.markdown:
            print(markdown_reference(), end="")
            return 0
        for key, type_name, default, help_text in describe():
            print(f"{key:<28} {type_name:<40} {default:<16} {help_text}")
        return 0
    if args.command == "compare":
        from cml.commands.compare import compare

        try:
            compare([Path(p) for p in args.paths], Path(args.out), as_json=args.json, fmt=args.format)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        except OSError as err:  # a run folder that cannot be listed, ...
            print(f"error: {err.filename or 'a file'}: {os_error_text(err)}", file=sys.stderr)
            return 2
        return 0
    if args.command == "eval":
        from cml.commands.evaluate import eval_command

        try:
            return eval_command(args)
        except UserError as err:
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return err.exit_code
        except OSError as err:
            print(f"error: {err.filename or 'a file'}: {os_error_text(err)}", file=sys.stderr)
            return 2
    if args.command == "plan":
        from cml.commands.plan import plan_command

        try:
            return plan_command(args.config, args.overrides, args.json)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        except OSError as err:  # the dataset's cache (CML_CACHE, data.cache_dir) cannot be written
            print(f"error: {err.filename or 'a file'}: {os_error_text(err)}", file=sys.stderr)
            return 2
    try:
        return _run_seeds(args) if args.seeds else _run(args)
    finally:
        if launched():
            from cml.runtime import distributed

            distributed.shutdown()
