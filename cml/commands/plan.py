"""`python -m cml plan CONFIG [--set key=value ...] [--json FILE]`: a protocol before training it.

It loads the config and the dataset and computes the steps with the code a run uses
(`cml.protocols.steps`), with numpy only: no torch, no Avalanche, no training. On COCO it takes
seconds once the annotation JSONs are parsed (the parse is cached). Per step it shows the classes,
the training and test images, the positive training labels per class (min / median / max) and
the selected images that carry no positive label; `n_train`, `n_test` and `classes` are the
values a run writes to results.json (for the finetune strategy, whose training set is the step's).
The images are checked as a run checks them (`cml.datasets.imagefiles.check_images`, verdicts cached), so
an image the run would leave out is not counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cml.config import Config, load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.datasets.imagefiles import check_images
from cml.protocols.steps import StepPlan, plan_steps, untrainable_step
from cml.runtime.files import write_text_atomic


def plan_summary(cfg: Config, plan: StepPlan, source: str) -> dict:
    names = plan.data.class_names
    steps = []
    for t, step in enumerate(plan.steps):
        positives = (step.train_targets[:, step.classes] == 1).sum(0)
        entry = {
            "step": t,
            "task": step.task,
            "classes": [names[c] for c in step.classes],
            "n_train": int(len(step.train_rows)),
            "n_test": int(len(step.test_rows)),
            "train_positives_per_class": {
                "min": int(positives.min()),
                "median": float(np.median(positives)),
                "max": int(positives.max()),
            },
            "train_without_positive": int((~(step.train_targets == 1).any(1)).sum()),
            "test_without_positive": int((~(step.test_targets[:, : step.n_seen] == 1).any(1)).sum()),
        }
        if cfg.eval.per_task:
            entry["test_per_task"] = [{"task": task, "n_test": int(len(at))} for task, at in step.test_tasks]
        steps.append(entry)
    out = {
        "config": source,
        "dataset": cfg.data.dataset,
        "protocol": cfg.scenario.protocol,
        "labels": cfg.scenario.labels,
        "n_classes": len(names),
        "class_order": names,
        "steps": steps,
        "skipped": plan.data.skipped,
    }
    if plan.class_groups is not None:
        out["class_groups"] = {g: [names[c] for c in cs] for g, cs in plan.class_groups.items()}
        out["class_groups_source"] = plan.groups_source
    return out


def format_text(info: dict) -> str:
    lines = [
        f"{info['dataset']}: {info['n_classes']} classes in {len(info['steps'])} steps "
        f"({info['protocol']}, labels {info['labels']})",
        f"{'step':>4} {'task':>4} {'classes':>7} {'train':>7} {'test':>6} "
        f"{'pos/class min':>13} {'median':>7} {'max':>6} {'train no pos':>12} {'test no pos':>11}",
    ]
    for s in info["steps"]:
        p = s["train_positives_per_class"]
        lines.append(
            f"{s['step']:>4} {s['task']:>4} {len(s['classes']):>7} {s['n_train']:>7} {s['n_test']:>6} "
            f"{p['min']:>13} {p['median']:>7g} {p['max']:>6} {s['train_without_positive']:>12} "
            f"{s['test_without_positive']:>11}"
        )
    for s in info["steps"]:
        lines.append(f"step {s['step']} classes: {', '.join(s['classes'])}")
        if "test_per_task" in s:
            lines.append(
                "  test images per task: " + ", ".join(f"task {e['task']}: {e['n_test']}" for e in s["test_per_task"])
            )
    for group, members in info.get("class_groups", {}).items():
        lines.append(f"{group} ({len(members)}): {', '.join(members)}")
    if "class_groups_source" in info:
        lines.append(f"groups from {info['class_groups_source']}")
    skipped = ", ".join(f"{k} {v}" for k, v in info["skipped"].items())
    lines.append(f"skipped: {skipped or 'none'}")
    return "\n".join(lines)


def plan_command(config: str, overrides: list[str], json_path: str | None) -> int:
    cfg = load_config(config, overrides)
    if json_path:
        check_json_path(Path(json_path))
    data = check_images(DATASETS.get(cfg.data.dataset).build(cfg.data), cfg.data)
    plan = plan_steps(cfg, data)
    info = plan_summary(cfg, plan, config)
    print(format_text(info))
    problem = untrainable_step(cfg, plan.steps, plan.data.class_names)
    if problem:
        print(f"warning: a run refuses this protocol: {problem}", file=sys.stderr)
    if json_path:
        try:
            write_text_atomic(Path(json_path), json.dumps(info, indent=2) + "\n")
        except UserError as err:
            raise UserError(f"--json: {err}") from None
    return 0


def check_json_path(path: Path) -> None:
    """Before loading anything: --json names a file in an existing folder."""
    if path.is_dir():
        raise UserError(f"--json: {path} is a folder; expected a file name, e.g. {path / 'plan.json'}")
    if not path.parent.is_dir():
        raise UserError(f"--json: {path.parent} is not an existing folder; create it or write elsewhere")
