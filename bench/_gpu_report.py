"""The verdicts and the report of bench/gpu_check.sh (no torch: quick to start).

    python bench/_gpu_report.py correctness RESULT NAME=RUNDIR:RECORD ... --steps N
    python bench/_gpu_report.py resume RESULT --full DIR --resumed DIR [--repeat DIR] [--note TEXT]
    python bench/_gpu_report.py throughput RESULT NAME=RUNDIR:RECORD ... --out OUT [--ceiling CASE]
        [--goal 0.9 --goal-run NAME] [--compare A,B]
    python bench/_gpu_report.py append OUT RESULT --section S --title T --rc RC --seconds S [--tail LOG]

A section writes RESULT (one JSON object: status, summary, md lines, details); `append` adds it,
with the section's exit code and time, to OUT/gpu_check.jsonl and OUT/gpu_check.md (a missing
RESULT is reported as the section's timeout or error).

Images/s: bench/_gpu_rates.py.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from _gpu_rates import last_error, run_config, run_rate  # bench/ is on the path (run as bench/_gpu_report.py)

from cml.evaluation.results import reproducible


def load(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def parse_runs(specs: list[str]) -> dict:
    runs = {}
    for spec in specs:
        name, paths = spec.split("=", 1)
        run_dir, record = paths.split(":", 1)
        runs[name] = (Path(run_dir), Path(record))
    return runs


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def check_results(run_dir: Path, record: dict | None, steps: int) -> tuple[bool, str, dict]:
    rc = record.get("rc") if record else None
    res = load(run_dir / "results.json")
    if res is None:
        return False, f"no results.json (exit {rc})", {}
    maps = [s.get("map") for s in res.get("steps", [])]
    ok = rc == 0 and len(maps) == steps and all(finite(m) for m in maps) and finite(res.get("avg_map"))
    nonfinite = res.get("skipped", {}).get("train_nonfinite_batches", 0)
    text = (
        f"exit {rc}, {len(maps)}/{steps} steps, mAP per step {[round(m, 2) if finite(m) else m for m in maps]}, "
        f"Avg {res.get('avg_map')!s:.6}, Last {res.get('last_map')!s:.6}, non-finite batches skipped {nonfinite}"
    )
    return ok, text, {"rc": rc, "maps": maps, "avg_map": res.get("avg_map"), "last_map": res.get("last_map")}


def sync_text(record: dict | None) -> str:
    syncs = (record or {}).get("syncs")
    if not isinstance(syncs, dict):
        return f"host syncs per iteration: {syncs or 'n/a'}"
    per = syncs["per_iteration"]
    sites = ", ".join(f"{where} x{n}" for where, n in syncs["sites"][:6])
    return (
        f"host syncs per training iteration: {per:.2f} ({syncs['total']} over {syncs['iterations']} "
        f"iterations); where: {sites or 'none'}"
        if per is not None
        else "host syncs: no iteration"
    )


def correctness(args) -> dict:
    lines, ok_all, details = [], True, {}
    for name, (run_dir, rec_path) in parse_runs(args.runs).items():
        record = load(rec_path)
        ok, text, info = check_results(run_dir, record, args.steps)
        if not ok:
            text += f"; log: {last_error(rec_path.with_suffix('.log'))}"
        ok_all &= ok
        info["syncs"] = (record or {}).get("syncs")
        details[name] = info
        lines += [f"- `{name}`: {'pass' if ok else 'FAIL'}: {text}", f"  - {sync_text(record)}"]
    return {
        "status": "pass" if ok_all else "fail",
        "md": lines,
        "details": details,
        "summary": "finite mAP at every step" if ok_all else "a run failed or gave a non-finite mAP",
    }


def numbers(value, path=""):
    """(path, number) for every number in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, float(value)


def difference(a: dict, b: dict) -> tuple[float, str, bool]:
    """(max |a - b| over the numbers both hold, where, whether a == b exactly), measured values left out."""
    a, b = reproducible(a), reproducible(b)
    na, nb = dict(numbers(a)), dict(numbers(b))
    worst, where = 0.0, ""
    for key in na.keys() & nb.keys():
        d = (
            abs(na[key] - nb[key])
            if math.isfinite(na[key]) and math.isfinite(nb[key])
            else (0.0 if na[key] == nb[key] else math.inf)
        )
        if d > worst:
            worst, where = d, key
    same_keys = na.keys() == nb.keys()
    return (worst if same_keys else math.inf), where or ("keys differ" if not same_keys else ""), a == b


def resume(args) -> dict:
    full, resumed = load(Path(args.full) / "results.json"), load(Path(args.resumed) / "results.json")
    if full is None or resumed is None:
        missing = [d for d, r in ((args.full, full), (args.resumed, resumed)) if r is None]
        return {"status": "fail", "summary": f"no results.json in {missing}", "md": [f"- {args.note}"]}
    worst, where, exact = difference(full, resumed)
    lines = [
        f"- {args.note}",
        "- resumed vs uninterrupted: "
        + ("exact (identical results.json)" if exact else f"max difference {worst:.6g} at {where}"),
    ]
    status = "pass" if exact else "diff"
    if args.repeat:
        repeat = load(Path(args.repeat) / "results.json")
        if repeat is not None:
            r_worst, r_where, r_exact = difference(full, repeat)
            lines.append(
                "- two uninterrupted runs, same seed: "
                + ("exact" if r_exact else f"max difference {r_worst:.6g} at {r_where}")
                + " (the run-to-run noise the resume difference compares with)"
            )
            if not exact and worst <= r_worst:
                status = "pass"  # no larger than what two uninterrupted runs differ by
    summary = "identical results.json" if exact else f"max difference {worst:.4g} ({where})"
    return {
        "status": status,
        "summary": summary,
        "md": lines,
        "details": {"exact": exact, "max_diff": worst, "where": where},
    }


def fmt(rate) -> str:
    return "-" if rate is None else f"{rate:.1f}"


def ceiling(out_dir: Path, case: str) -> float | None:
    path = out_dir / "gpu_check.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        doc = json.loads(line)
        if doc.get("section") == "s4":
            return (doc.get("details", {}).get("cases", {}).get(case) or {}).get("images_per_s")
    return None


def throughput(args) -> dict:
    limit = ceiling(Path(args.out), args.ceiling) if args.ceiling else None
    lines = [
        "| run | exit | images/s | how | vs ceiling | per step (steady / with first epoch) | wall s | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    details, ok = {"ceiling": limit}, True
    for name, (run_dir, rec_path) in parse_runs(args.runs).items():
        info = run_rate(run_dir, load(rec_path), rec_path.with_suffix(".log"))
        details[name] = info
        rate = info.get("rate")
        ok &= info["rc"] == 0
        ratio = f"{rate / limit:.3f}" if rate and limit else "n/a"
        steps = "; ".join(f"{s['step']}: {fmt(s['steady'])} / {fmt(s['with_first_epoch'])}" for s in info["per_step"])
        data = run_config(run_dir).get("data", {})
        notes = ", ".join(
            x
            for x in (
                f"workers {data.get('num_workers', '?')}, cache {data.get('cache', '?')}",
                f"cache built: {info['cache_build']}" if info["cache_build"] else "",
                "compile FELL BACK to eager" if info["fell_back"] else "",
                last_error(rec_path.with_suffix(".log")) if info["rc"] != 0 else "",
            )
            if x
        )
        lines.append(
            f"| `{name}` | {info['rc']} | {rate or 0:.1f} | {info.get('how', 'none')} | {ratio} | {steps} "
            f"| {info['wall_s'] or 0:.0f} | {notes} |"
        )
    status = "measured" if ok else "fail"
    summary = f"ceiling ({args.ceiling}) {limit:.1f} images/s" if limit else "no ceiling (section 4 missing)"
    if args.compare:
        a, b = args.compare.split(",")
        ra, rb = details.get(a, {}).get("rate"), details.get(b, {}).get("rate")
        if ra and rb:
            summary = f"`{b}` / `{a}` = {rb / ra:.2f}x; " + summary
    if args.goal_run and ok:
        rate = details[args.goal_run].get("rate")
        if rate and limit:
            status = "pass" if rate >= args.goal * limit else "below"
            summary = f"`{args.goal_run}` at {rate / limit:.3f} of the ceiling (goal {args.goal}); " + summary
    return {"status": status, "summary": summary, "md": lines, "details": details}


def append(args) -> None:
    out = Path(args.out)
    timed_out = args.rc in (124, 137)
    result = load(args.result) or {
        "status": "timeout" if timed_out else "error",
        "summary": f"no result written (exit {args.rc})",
        "md": [],
    }
    if timed_out and result["status"] != "timeout":  # what it wrote before its time limit
        result["status"], result["summary"] = (
            "timeout",
            "partial, stopped at its time limit: " + result.get("summary", ""),
        )
    result.update(
        section=args.section, title=args.title, rc=args.rc, seconds=round(args.seconds, 1), log=f"logs/{args.section}/"
    )
    with open(out / "gpu_check.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")
    tail = []
    if result["status"] in ("timeout", "error", "fail") and args.tail and Path(args.tail).is_file():
        tail = ["", "```", *Path(args.tail).read_text(errors="replace").splitlines()[-8:], "```"]
    with open(out / "gpu_check.md", "a") as fh:
        fh.write(
            f"\n## {args.title}: {result['status'].upper()} ({args.seconds:.0f} s, exit {args.rc})\n\n"
            f"{result.get('summary', '')}\n\n"
            + "".join(line + "\n" for line in result.get("md", []) + tail)
            + f"\nlogs: `logs.tar.gz:{result['log']}` ({time.strftime('%H:%M:%S')})\n"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("correctness")
    p.add_argument("result")
    p.add_argument("runs", nargs="+")
    p.add_argument("--steps", type=int, required=True)
    p = sub.add_parser("resume")
    p.add_argument("result")
    p.add_argument("--full", required=True)
    p.add_argument("--resumed", required=True)
    p.add_argument("--repeat")
    p.add_argument("--note", default="")
    p = sub.add_parser("throughput")
    p.add_argument("result")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--ceiling")
    p.add_argument("--goal", type=float, default=0.9)
    p.add_argument("--goal-run")
    p.add_argument("--compare", help="A,B: also the ratio of B's images/s to A's")
    p = sub.add_parser("append")
    p.add_argument("out")
    p.add_argument("result")
    p.add_argument("--section", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--tail", help="the section's log: its last lines go in the report when it did not pass")
    args = parser.parse_args(argv)
    if args.command == "append":
        return append(args)
    result = {"correctness": correctness, "resume": resume, "throughput": throughput}[args.command](args)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['status']}: {result['summary']}")


if __name__ == "__main__":
    main()
