"""The run's summary: mAP matrix, Avg/Last mAP, forgetting; and the files that hold them.

R[i][j] is the mAP on step j's classes after training step i (j <= i; later entries are null),
measured on the test set of step i. Avg mAP is the mean of the per-step mAP, base step included
(KRT's "Avg."); Last mAP the final one. Average forgetting (Chaudhry et al.): for each step
j < T, the best R[i][j] over j <= i < T minus R[T][j], averaged over j (null with one step).
With per-task values (`eval.per_task`), also PRS's `relative_forgetting` (see `per_task.py`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from cml.evaluation.per_task import relative_forgetting
from cml.runtime.files import write_text_atomic

STEP_KEYS = ("map", "cp", "cr", "cf1", "macro_f1", "op", "or", "of1")
# what the machine measured (cml.runtime.run_facts): per step, and at the top level
MEASURED = ("wall_s", "train_s", "images_per_s", "peak_ram_mib", "peak_gpu_mib")
MEASURED_RUN = ("wall_s", "environment")


def json_safe(value):
    """JSON has no NaN: undefined values are written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def _num(v) -> float:
    return float("nan") if v is None else v


def summarize(steps: list[dict]) -> dict:
    T = len(steps)
    matrix = [[_num(s["step_map"][j]) if j <= i else None for j in range(T)] for i, s in enumerate(steps)]
    maps = [_num(s["map"]) for s in steps]
    forgetting = None
    if T > 1:
        drops = []
        for j in range(T - 1):
            earlier = [matrix[i][j] for i in range(j, T - 1) if not math.isnan(matrix[i][j])]
            if earlier and not math.isnan(matrix[T - 1][j]):
                drops.append(max(earlier) - matrix[T - 1][j])
        forgetting = sum(drops) / len(drops) if drops else None
    summary = {
        "map_matrix": matrix,
        "avg_map": sum(maps) / T,
        "last_map": maps[-1],
        "avg_forgetting": forgetting,
        "steps": steps,
    }
    if steps[0].get("per_task"):
        summary["relative_forgetting"] = relative_forgetting(steps)
    return json_safe(summary)


def build_summary(steps: list[dict], extra: dict) -> dict:
    """The contents of results.json; batches skipped for a non-finite loss (`train.nonfinite:
    skip`, per step in `skipped_batches`) are added up in `skipped`. `wall_s`: the steps' wall
    times added up (a resumed run's too: the time its steps took, not the time between start and
    end), null if a step has none (one of an older cml); `params_total`: the last step's model's."""
    summary = {**summarize(steps), **extra}
    nonfinite = sum(s.get("skipped_batches", 0) for s in steps)
    if nonfinite:
        summary["skipped"] = {**summary.get("skipped", {}), "train_nonfinite_batches": nonfinite}
    walls = [s.get("wall_s") for s in steps]
    summary["wall_s"] = round(sum(walls), 3) if None not in walls else None
    summary["params_total"] = steps[-1].get("params_total")
    return summary


def reproducible(summary: dict) -> dict:
    """results.json without what the machine measured (times, throughput, memory, software, host):
    what a rerun with the same config and seed, or a resumed run, reproduces."""
    kept = {k: v for k, v in summary.items() if k not in MEASURED_RUN}
    kept["steps"] = [{k: v for k, v in s.items() if k not in MEASURED} for s in summary["steps"]]
    return kept


def write_summary(run_dir: Path, summary: dict) -> None:
    """results.json and metrics.csv, each replaced atomically (a failed write leaves the old file)."""
    write_text_atomic(run_dir / "results.json", json.dumps(summary, indent=2) + "\n")
    columns = ["step", "n_classes", "n_train", "n_test", *STEP_KEYS, "classes_without_positive"]
    rows = [
        [
            i,
            len(s["classes"]),
            s["n_train"],
            s["n_test"],
            *(_fmt(s[k]) for k in STEP_KEYS),
            s["classes_without_positive"],
        ]
        for i, s in enumerate(summary["steps"])
    ]
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(columns)
    writer.writerows(rows)
    write_text_atomic(run_dir / "metrics.csv", table.getvalue())


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"


def format_row(i: int, s: dict) -> str:
    cells = " ".join(f"{(s[k] if s[k] is not None else float('nan')):6.2f}" for k in ("map", "cf1", "of1"))
    return f"{i:>4} {len(s['classes']):>7} {s['n_train']:>7} {s['n_test']:>6} {cells}"


ROW_HEADER = f"{'step':>4} {'classes':>7} {'train':>7} {'test':>6} {'mAP':>6} {'CF1':>6} {'OF1':>6}"


def format_summary(summary: dict) -> str:
    T = len(summary["steps"])
    lines = [
        "mAP matrix (row: after step i; column: classes of step j)",
        "      " + " ".join(f"{'j=' + str(j):>7}" for j in range(T)),
    ]
    for i, row in enumerate(summary["map_matrix"]):
        lines.append(f"i={i:<3} " + " ".join(f"{v:7.2f}" if v is not None else f"{'':>7}" for v in row))
    avg, last, f = (
        ("n/a" if v is None else f"{v:.2f}")
        for v in (summary["avg_map"], summary["last_map"], summary["avg_forgetting"])
    )
    lines.append(f"Avg mAP {avg}   Last mAP {last}   Avg forgetting {f}")  # n/a: no test positive at all
    return "\n".join(lines)
