"""The command line's arguments: one subcommand each for run, plan, eval, compare and keys."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cml",
        description="Continual multi-label learning on Avalanche.",
        epilog="`python -m cml keys` lists every config key with its type and default.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run an experiment from a YAML config",
        description="Train and evaluate a class-incremental multi-label experiment.",
    )
    run.add_argument("config", help="YAML config file (see configs/)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, value read as YAML (e.g. --set train.epochs=3 "
        "--set strategy.plugins=[a,b]); repeatable",
    )
    run.add_argument("--out", help="run directory (default: runs/<config name>-<time>)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out after its last completed step; with --seeds, continue every unfinished seed",
    )
    run.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="run once per seed, one after the other, each in PARENT/seed<SEED> "
        "(PARENT: --out, default runs/<config name>-<time>)",
    )
    plan = sub.add_parser(
        "plan",
        help="show a protocol's steps without training (no torch)",
        description="Load the config and the dataset and print, per step, the classes, the "
        "training and test images, positive labels per class and the selected "
        "images with no positive label.",
    )
    plan.add_argument("config", help="YAML config file (see configs/)")
    plan.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, as for run; repeatable",
    )
    plan.add_argument("--json", metavar="FILE", help="also write the same as JSON to FILE")
    evaluate = sub.add_parser(
        "eval",
        help="score a run's saved model again on its protocol (or another config's test set)",
        description="Rebuild the model a run saved after step K (model.pt, model_step<K>.pt or checkpoint.pt) "
        "and score it on the test set of step K, as the run did: mAP, CP, CR, CF1, macro F1, OP, OR, OF1.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (config.yaml, results.json, model.pt)")
    evaluate.add_argument("--step", type=int, metavar="K", help="the model after step K (default: the last completed)")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="eval.KEY=VALUE",
        help="override an eval key (e.g. --set eval.threshold=0.8 --set eval.strict=true); repeatable",
    )
    evaluate.add_argument(
        "--config", help="take the test set from this config's data and scenario (the same classes, in order)"
    )
    evaluate.add_argument("--json", metavar="FILE", help="also write the values as JSON to FILE")
    compare = sub.add_parser(
        "compare",
        help="compare runs: a table (markdown, LaTeX or CSV) and a PNG of mAP per step",
        description="Group runs whose configs differ only in the seed; print Avg "
        "mAP, Last mAP, forgetting, CF1 in both conventions (ML-GCN's and KRT's per-class mean) and OF1 "
        "(mean and std over seeds), the published numbers of a run's protocol, and plot mAP per step.",
    )
    compare.add_argument(
        "paths", nargs="+", metavar="RUN_DIR_OR_PARENT", help="run directories, or folders searched for them"
    )
    compare.add_argument("--out", default="compare.png", help="the PNG to write (default: compare.png)")
    compare.add_argument("--json", action="store_true", help="print the groups as JSON instead of a table")
    compare.add_argument(
        "--format",
        choices=("markdown", "latex", "csv"),
        default="markdown",
        help="the table: markdown, a LaTeX booktabs tabular, or CSV with mean, std and n (default: markdown)",
    )
    keys = sub.add_parser("keys", help="list the config keys, their types and defaults")
    keys.add_argument(
        "config", nargs="?", help="a config whose `imports:` declare more components: listed too, with --allow-imports"
    )
    keys.add_argument("--markdown", action="store_true", help="as the table of docs/config.md")
    for command in (run, plan, evaluate, keys):
        _consent(command)
    return parser


def _consent(command: argparse.ArgumentParser) -> None:
    """A config is data: the modules its `imports:` names run only when the user says so."""
    command.add_argument(
        "--allow-imports",
        action="store_true",
        help="import the modules the config's `imports:` names (their code runs); also CML_ALLOW_IMPORTS=1",
    )
    command.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (on PYTHONPATH), which declares a component; allowed in `imports:` too; repeatable",
    )
