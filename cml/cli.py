"""`python -m cml run CONFIG [--set key=value ...] [--out DIR] [--seeds N ...] [--resume]` and
`python -m cml compare RUN_DIR_OR_PARENT ... [--out FILE.png] [--json]`.

Arguments, the config and the dataset are checked before torch and Avalanche are imported (they
take seconds), so mistakes are reported at once: one line naming the file or key, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import yaml

from cml.config import describe, load_config, markdown_reference, to_dict
from cml.errors import UserError

MARKERS = ("checkpoint.pt", "results.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cml", description="Continual multi-label learning on Avalanche.",
        epilog="`python -m cml keys` lists every config key with its type and default.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment from a YAML config",
                         description="Train and evaluate a class-incremental multi-label experiment.")
    run.add_argument("config", help="YAML config file (see configs/)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, value read as YAML (e.g. --set train.epochs=3 "
                          "--set strategy.plugins=[a,b]); repeatable")
    run.add_argument("--out", help="run directory (default: runs/<config name>-<time>)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out after its last completed step; with --seeds, "
                          "continue every unfinished seed")
    run.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                     help="run once per seed, one after the other, each in PARENT/seed<SEED> "
                          "(PARENT: --out, default runs/<config name>-<time>)")
    compare = sub.add_parser("compare", help="compare runs: a markdown table and a PNG of mAP per step",
                             description="Group runs whose configs differ only in the seed; print Avg "
                                         "mAP, Last mAP, forgetting, CF1 and OF1 (mean and std over "
                                         "seeds) and plot mAP per step.")
    compare.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_PARENT",
                         help="run directories, or folders searched for them")
    compare.add_argument("--out", default="compare.png", help="the PNG to write (default: compare.png)")
    compare.add_argument("--json", action="store_true", help="print the groups as JSON instead of a table")
    keys = sub.add_parser("keys", help="list the config keys, their types and defaults")
    keys.add_argument("--markdown", action="store_true", help="as the table of docs/config.md")
    return parser


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix[:-1]} ({b!r} in the run, {a!r} now)"


def _check_same_config(run_dir: Path, cfg) -> None:
    saved_path = run_dir / "config.yaml"
    diff = _first_difference(to_dict(cfg), yaml.safe_load(saved_path.read_text()))
    if diff:
        raise UserError(f"--resume: the config differs from the one {run_dir} was started with: {diff}")


def _run_directory(args, cfg) -> Path:
    if args.resume:
        if not args.out:
            raise UserError("--resume needs --out DIR, the run directory to continue")
        run_dir = Path(args.out)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"--resume: {run_dir / 'config.yaml'} not found; is {run_dir} a cml run directory?")
        _check_same_config(run_dir, cfg)
        return run_dir
    run_dir = Path(args.out) if args.out else _default_out(args)
    _refuse_existing_run(run_dir)
    return run_dir


def _default_out(args) -> Path:
    return Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _refuse_existing_run(run_dir: Path) -> None:
    if any((run_dir / m).exists() for m in MARKERS):
        raise UserError(f"--out: {run_dir} already holds a run; add --resume to continue it, "
                        f"or choose another directory")


def _seed_runs(args) -> list[tuple[object, Path, bool]]:
    """(config, run directory, resume) per seed; `--resume` continues the seeds that completed a
    step, starts the others, and leaves out the finished ones."""
    if args.resume and not args.out:
        raise UserError("--resume needs --out PARENT, the folder of the seeds' run directories")
    parent = Path(args.out) if args.out else _default_out(args)
    runs = []
    for seed in dict.fromkeys(args.seeds):
        cfg = load_config(args.config, [*args.overrides, f"seed={seed}"])
        run_dir = parent / f"seed{seed}"
        if not args.resume:
            _refuse_existing_run(run_dir)
            runs.append((cfg, run_dir, False))
            continue
        if (run_dir / "config.yaml").is_file():
            _check_same_config(run_dir, cfg)
        if _finished(run_dir):
            print(f"{run_dir}: finished, nothing to resume")
            continue
        runs.append((cfg, run_dir, (run_dir / "checkpoint.pt").is_file()))
    return runs


def _finished(run_dir: Path) -> bool:
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return "n_steps" in results and len(results["steps"]) == results["n_steps"]


def _run_one(cfg, run_dir: Path, resume: bool, data=None):
    """One run from a loaded config into `run_dir`; returns the loaded dataset for the next seed."""
    if data is None:
        from cml.datasets import DATASETS

        data = DATASETS.get(cfg.data.dataset)(cfg.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    # qpsolvers, imported by Avalanche, warns on every start that it found no QP solver
    warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)
    from cml.run import run  # the heavy imports: torch, timm, Avalanche

    run(cfg, data, run_dir, resume=resume)
    return data


def _compare(args) -> int:
    from cml.compare import compare

    try:
        compare([Path(p) for p in args.paths], Path(args.out), as_json=args.json)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        if args.markdown:
            print(markdown_reference(), end="")
            return 0
        for key, type_name, default, help_text in describe():
            print(f"{key:<28} {type_name:<40} {default:<16} {help_text}")
        return 0
    if args.command == "compare":
        return _compare(args)
    run_dir = None
    try:
        if args.seeds:
            runs = _seed_runs(args)
        else:
            cfg = load_config(args.config, args.overrides)
            runs = [(cfg, _run_directory(args, cfg), args.resume)]
        data = None
        for cfg, run_dir, resume in runs:
            data = _run_one(cfg, run_dir, resume, data)  # the seeds share the dataset: load it once
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        where = ""
        if run_dir and args.seeds:
            where = (f"; completed steps are saved under {run_dir.parent}; continue with "
                     f"--out {run_dir.parent} --seeds {' '.join(map(str, args.seeds))} --resume")
        elif run_dir and (run_dir / "checkpoint.pt").exists():
            where = f"; completed steps are saved in {run_dir}; continue with --out {run_dir} --resume"
        print(f"\ninterrupted{where}", file=sys.stderr)
        return 130
    return 0
