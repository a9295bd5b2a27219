"""Frozen-backbone feature caching (`strategy.feature_cache`): whole runs with and without it, in
one command, on the same config and data; the ratio of wall times and the backbone passes saved.

    python bench/feature_cache.py --config configs/demo_l3a.yaml --repeats 1
    python bench/feature_cache.py --config configs/demo.yaml --set strategy.name=probe --set train.hflip=false

Runs alternate (without, with, without, ...) so that a change in the machine's load hits both.
The results of both must agree (printed: the largest difference in Last mAP).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from _setup import bench_parser  # also puts the repository root on the path

warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

from cml.commands.run import run  # noqa: E402
from cml.config import load_config  # noqa: E402
from cml.core.registry import DATASETS  # noqa: E402


def timed_run(args, cache: bool, folder: Path) -> tuple[float, float]:
    cfg = load_config(args.config, [*args.overrides, f"strategy.feature_cache={str(cache).lower()}"])
    data = DATASETS.get(cfg.data.dataset).build(cfg.data)
    out = Path(tempfile.mkdtemp(dir=folder))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run(cfg, data, out)
    return time.perf_counter() - start, summary["last_map"]


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    times = {False: [], True: []}
    last = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for cache in (False, True):
                seconds, last_map = timed_run(args, cache, Path(folder))
                times[cache].append(seconds)
                last[cache].append(last_map)
                print(f"feature_cache={cache}: {seconds:.1f} s, Last mAP {last_map:.2f}", flush=True)
    plain, cached = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"| | whole run, s (median of {args.repeats}) |\n|---|---|\n| no cache | {plain:.1f} |\n"
        f"| feature cache | {cached:.1f} |\n| **ratio no cache / cache** | **{plain / cached:.2f}x** |"
    )
    print(f"largest Last mAP difference: {max(abs(a - b) for a, b in zip(last[False], last[True])):.4f}")


if __name__ == "__main__":
    main()
