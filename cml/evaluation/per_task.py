"""PRS's evaluation (`eval.per_task: true`), as its official code computes it.

From cdjkim/PRS `code/eval.py: validate` and `code/data.py: MSCOCO/NUSWIDE._eval_model`:
- after each task, every task run so far is scored on its own test set, over the classes present
  in that test set (a class with at least one positive): mAP, CP, CR, CF1 (2 CP CR / (CP + CR)),
  OP, OR, OF1, and the same over the present classes of each group (majority, moderate,
  minority; a group with no present class has no value);
- "tally": the same over the tasks' test sets concatenated;
- relative forgetting, for mAP, CF1 and OF1 and per group: for each task but the last one run,
  (best earlier value - final value) / |best earlier value|, where "earlier" are its evaluations
  after its own step up to the one before the last; 1 when both are 0; -final when only the best
  is 0. Averaged over the tasks.
Values here are in percent, forgetting included (PRS prints fractions).
"""

from __future__ import annotations

import math

import torch

from cml.evaluation.metrics import multilabel_metrics

KEYS = ("map", "cp", "cr", "cf1", "macro_f1", "op", "or", "of1")
FORGET_KEYS = ("map", "cf1", "of1")


def _scores(scores: torch.Tensor, targets: torch.Tensor, columns: list[int], threshold: float, strict: bool) -> dict:
    if not columns:
        return {k: float("nan") for k in KEYS}
    values = multilabel_metrics(scores[:, columns], targets[:, columns], threshold, strict)
    return {k: values[k] for k in KEYS}


def subset_values(
    scores: torch.Tensor, targets: torch.Tensor, groups: dict[str, list[int]] | None, threshold: float, strict: bool
) -> dict:
    """Metrics over the classes present in `targets`, and over each group's present classes."""
    present = torch.nonzero((targets == 1).any(0)).flatten().tolist()
    values = {
        "n_test": int(targets.shape[0]),
        "n_classes": len(present),
        **_scores(scores, targets, present, threshold, strict),
    }
    if groups is not None:
        values["groups"] = {}
        for name, members in groups.items():
            members = set(members)
            values["groups"][name] = _scores(scores, targets, [c for c in present if c in members], threshold, strict)
    return values


def per_task_values(
    scores: torch.Tensor,
    targets: torch.Tensor,
    tasks: list[tuple[int, object]],
    groups: dict[str, list[int]] | None,
    threshold: float,
    strict: bool,
) -> dict:
    """`tasks`: (task, positions of its test images in `scores`) for every task run so far."""
    records, tally = [], []
    for task, positions in tasks:
        at = torch.as_tensor(positions, dtype=torch.long)
        tally.append(at)
        records.append({"task": task, **subset_values(scores[at], targets[at], groups, threshold, strict)})
    at = torch.cat(tally)  # PRS concatenates the tasks' test sets, an image listed twice counts twice
    return {"tasks": records, "tally": subset_values(scores[at], targets[at], groups, threshold, strict)}


def _value(v) -> float:
    return float("nan") if v is None else float(v)


def relative(history: list) -> float:
    """PRS's forgetting of one task for one metric, in percent; NaN when undefined."""
    values = [_value(v) for v in history]
    earlier = [v for v in values[:-1] if not math.isnan(v)]
    final = values[-1]
    if not earlier or math.isnan(final):
        return float("nan")
    best = max(earlier)
    if best == 0:
        return 100.0 if final == 0 else -final
    return 100 * (best - final) / abs(best)


def _mean(values: list[float]):
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def relative_forgetting(steps: list[dict]) -> dict | None:
    """Over the step records' `per_task` values; None before a second step (or without them)."""
    if len(steps) < 2 or not all(s.get("per_task") for s in steps):
        return None
    history: dict = {}
    for step in steps:
        for record in step["per_task"]["tasks"]:
            history.setdefault(record["task"], []).append(record)
    per_task = []
    for task, records in history.items():
        if len(records) < 2:  # the task run last: evaluated once
            continue
        entry = {"task": task, **{k: relative([r[k] for r in records]) for k in FORGET_KEYS}}
        for group in records[0].get("groups", {}):
            if math.isnan(_value(records[0]["groups"][group]["map"])):  # no class of the group in the task
                entry[group] = {k: float("nan") for k in FORGET_KEYS}
            else:
                entry[group] = {k: relative([r["groups"][group][k] for r in records]) for k in FORGET_KEYS}
        per_task.append(entry)
    summary = {k: _mean([e[k] for e in per_task]) for k in FORGET_KEYS}
    for group in steps[0]["per_task"]["tasks"][0].get("groups", {}):
        summary[group] = {k: _mean([e[group][k] for e in per_task]) for k in FORGET_KEYS}
    summary["per_task"] = per_task
    return summary
