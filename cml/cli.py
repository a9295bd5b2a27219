"""`python -m cml run CONFIG [--set key=value ...] [--out DIR] [--resume]`, and
`python -m cml plan CONFIG [--set key=value ...] [--json FILE]` (the steps, without torch).

Arguments, the config and the dataset are checked before torch and Avalanche are imported (they
take seconds), so mistakes are reported at once: one line naming the file or key, exit code 2.
"""

from __future__ import annotations

import argparse
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
                     help="continue the run in --out after its last completed step")
    plan = sub.add_parser("plan", help="show a protocol's steps without training (no torch)",
                          description="Load the config and the dataset and print, per step, the classes, the "
                                      "training and test images, positive labels per class and the selected "
                                      "images with no positive label.")
    plan.add_argument("config", help="YAML config file (see configs/)")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key, as for run; repeatable")
    plan.add_argument("--json", metavar="FILE", help="also write the same as JSON to FILE")
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


def _run_directory(args, cfg) -> Path:
    if args.resume:
        if not args.out:
            raise UserError("--resume needs --out DIR, the run directory to continue")
        run_dir = Path(args.out)
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            raise UserError(f"--resume: {saved_path} not found; is {run_dir} a cml run directory?")
        diff = _first_difference(to_dict(cfg), yaml.safe_load(saved_path.read_text()))
        if diff:
            raise UserError(f"--resume: the config differs from the one {run_dir} was started with: {diff}")
        return run_dir
    run_dir = Path(args.out) if args.out else \
        Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if any((run_dir / m).exists() for m in MARKERS):
        raise UserError(f"--out: {run_dir} already holds a run; add --resume to continue it, "
                        f"or choose another directory")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        if args.markdown:
            print(markdown_reference(), end="")
            return 0
        for key, type_name, default, help_text in describe():
            print(f"{key:<28} {type_name:<40} {default:<16} {help_text}")
        return 0
    if args.command == "plan":
        from cml.plan import plan_command

        try:
            return plan_command(args.config, args.overrides, args.json)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
    run_dir = None
    try:
        cfg = load_config(args.config, args.overrides)
        run_dir = _run_directory(args, cfg)
        from cml.datasets import DATASETS

        data = DATASETS.get(cfg.data.dataset)(cfg.data)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        # qpsolvers, imported by Avalanche, warns on every start that it found no QP solver
        warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)
        from cml.run import run  # the heavy imports: torch, timm, Avalanche

        run(cfg, data, run_dir, resume=args.resume)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        where = (f"; completed steps are saved in {run_dir}; continue with --out {run_dir} --resume"
                 if run_dir and (run_dir / "checkpoint.pt").exists() else "")
        print(f"\ninterrupted{where}", file=sys.stderr)
        return 130
    return 0
