"""Compare two parents written by bench/same_numbers.sh: every step's metrics must be equal.

Why: a refactor (layout, contract, configs) must not move a number; wall times and paths are
left out of the comparison, everything a step scores is compared exactly."""

import json
import sys
from pathlib import Path

from cml.evaluation.results import MEASURED, MEASURED_RUN

IGNORED = {"wall_s", "wall_time_s", "seconds", "time_s", "images_per_s", "run_dir", "config_path"}
IGNORED |= {*MEASURED, *MEASURED_RUN}  # what the machine measured


def scored(value):
    if isinstance(value, dict):
        return {k: scored(v) for k, v in value.items() if k not in IGNORED}
    if isinstance(value, list):
        return [scored(v) for v in value]
    return value


def main(before: str, after: str) -> int:
    differ = 0
    for run in sorted(Path(before).glob("*/seed0/results.json")):
        other = Path(after) / run.relative_to(before)
        if not other.exists():
            print(f"{run.parts[-3]}: missing in {after}")
            differ += 1
            continue
        a, b = scored(json.loads(run.read_text())), scored(json.loads(other.read_text()))
        # keys the later code adds (a step's loss_breakdown) are additions, not differences
        same = len(a["steps"]) == len(b["steps"]) and all(
            {k: y.get(k) for k in x} == x for x, y in zip(a["steps"], b["steps"])
        )
        print(f"{run.parts[-3]}: {'identical' if same else 'DIFFERENT'}")
        differ += not same
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
