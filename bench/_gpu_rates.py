"""How bench/gpu_check.sh takes the images/s of a `cml run` (no torch).

Images/s, in this order of preference: (1) the epoch records of bench/_gpu_run.py: images
through the model (replayed ones included) over the epochs' synchronised wall time; "steady"
leaves out each step's first epoch (the workers' start, cuDNN's autotuning, compilation), or
for one-epoch steps (online) the first step; (2) the last progress line of the step
(`... | R images/s | ...`, since the step started); (3) results.json's n_trained times the
epochs over the whole run's wall time (imports and evaluation included). Each figure says which.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PROGRESS = re.compile(r"^step (\d+) epoch (\d+)/(\d+) batch .*\| ([\d.]+) images/s")


def load(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def last_error(log: Path) -> str:
    """The last line of a run's log that names an error, for a run that did not end well."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    hits = [ln for ln in lines if re.match(r"^(error|\w*Error|\w*Exception)\b", ln.strip())]
    return (hits or lines or ["(no log)"])[-1].strip()[:240]


def epoch_rates(record: dict) -> dict:
    steps = [s for s in record.get("steps", []) if any(e.get("t_end") for e in s["epochs"])]
    out = {"per_step": []}
    for s in steps:
        eps = [e for e in s["epochs"] if e.get("t_end") is not None]
        first = sum(e["images"] for e in eps) / max(eps[-1]["t_end"] - s["t_start"], 1e-9)
        later = eps[1:]
        steady = (
            (sum(e["images"] for e in later) / max(sum(e["t_end"] - e["t_start"] for e in later), 1e-9))
            if later
            else None
        )
        out["per_step"].append(
            {
                "step": s["step"],
                "epochs": len(eps),
                "images": sum(e["images"] for e in eps),
                "with_first_epoch": first,
                "steady": steady,
            }
        )
    per = out["per_step"]
    if per and per[0]["steady"] is not None:
        out["rate"], out["how"] = per[0]["steady"], f"step 0, epochs 2-{per[0]['epochs']} (epoch records)"
    elif len(per) > 1:  # one epoch per step (online): the steps after the first
        eps = [e for s in steps[1:] for e in s["epochs"] if e.get("t_end") is not None]
        out["rate"] = sum(e["images"] for e in eps) / max(sum(e["t_end"] - e["t_start"] for e in eps), 1e-9)
        out["how"] = f"steps 1-{len(per) - 1} in run order, their one epoch each (epoch records)"
    elif per:
        out["rate"], out["how"] = (
            per[0]["with_first_epoch"],
            "step 0 with its first epoch (epoch records; warm-up included)",
        )
    return out


def run_config(run_dir: Path) -> dict:
    try:
        import yaml

        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except Exception:
        return {}


def run_epochs(run_dir: Path) -> int:
    train = run_config(run_dir).get("train", {})
    return 1 if train.get("online") else int(train.get("epochs", 1))


def run_rate(run_dir: Path, record: dict | None, log: Path) -> dict:
    info = epoch_rates(record) if record else {"per_step": []}
    last = {}
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            m = PROGRESS.match(line)
            if m:
                last[int(m.group(1))] = float(m.group(4))
    info["progress_line"] = last
    if "rate" not in info:
        res = load(run_dir / "results.json")
        if last:
            info["rate"], info["how"] = next(iter(last.values())), "the first step's last progress line"
        elif res and record and record.get("wall_s"):
            epochs = run_epochs(run_dir)
            trained = sum(s.get("n_trained", s.get("n_train", 0)) for s in res["steps"]) * epochs
            info["rate"], info["how"] = trained / record["wall_s"], "n_trained x epochs / whole run wall time"
    text = log.read_text(errors="replace") if log.is_file() else ""
    info["fell_back"] = bool((record or {}).get("compile_fallback")) or "torch.compile failed" in text
    cached = re.search(r"cached (\d+) images in (\d+)s", text)
    info["cache_build"] = f"{cached.group(1)} images in {cached.group(2)} s" if cached else None
    info["rc"], info["wall_s"] = (record or {}).get("rc"), (record or {}).get("wall_s")
    return info
