"""`python -m cml compare RUN_DIR_OR_PARENT ...`: runs side by side, a table (markdown, LaTeX or CSV,
cml/commands/compare/formats.py) and a PNG.

A run directory is a folder with `results.json` and `config.yaml`; any other folder given is
searched for them. Runs whose configs are equal apart from `seed`, the `log` section and the data locations
(`data.root`, `data.cache_dir`), and whose data are the same (`data_digest` in results.json:
class names, image ids and labels, see `cml.runtime.checkpoint.content_digest`), and whose starting
weights are the same file by content (`pretrained` in results.json), form one configuration;
its numbers are the mean and the sample standard deviation (n - 1) over its runs. A run written
before the digest existed is grouped by its `data.root` instead, and one written before a core key
of data, scenario, train or eval existed by that key's default (or what it ran,
`cml.runtime.run_directory.as_it_ran`), so a new key does not split old runs from new. The F1s (both CF1 conventions
and OF1) are those of the last step. A configuration on a published protocol (its config.yaml's
dataset and scenario, cml/protocols/published.yaml) is shown with the protocol's published numbers.
Left out, each with a note on stderr, the rest still compared: unfinished runs (fewer steps
in results.json than the run has), unreadable or foreign run directories, and a run repeating the
configuration and seed of another (a copy of a run directory is not a second seed).

Reads only JSON and YAML and imports only matplotlib (no torch, no Avalanche), so it is fast.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cml.commands.compare.formats import COLUMNS, render, to_json
from cml.config import to_dict
from cml.config.keys import DataConfig, EvalConfig, ScenarioConfig, TrainConfig
from cml.core import safeyaml
from cml.core.errors import UserError
from cml.core.registry import PLUGINS, section_of
from cml.protocols.published import protocol_of
from cml.runtime.run_directory import as_it_ran

IGNORED = ("seed", "data.root", "data.cache_dir")  # the same configuration whatever their values
IGNORED_SECTIONS = ("log.",)  # loggers, progress, model files: nothing a result depends on


def ignored(key: str) -> bool:
    return key in IGNORED or key.startswith(IGNORED_SECTIONS)


SHOWN = ("strategy.name", "strategy.plugins", "model.name", "model.backbone")  # always in the label
LAST_STEP = ("cf1", "macro_f1", "of1")  # read from the last step's record


@dataclass
class Run:
    path: Path
    config: dict  # flattened: dotted key -> value
    results: dict

    def has(self, key: str) -> bool:  # macro_f1 may be absent (results of an older cml)
        return key in (self.results["steps"][-1] if key in LAST_STEP else self.results)

    def value(self, key: str) -> float | None:
        return (self.results["steps"][-1] if key in LAST_STEP else self.results)[key]


@dataclass
class Group:
    runs: list[Run]
    label: str = ""
    stats: dict = field(default_factory=dict)  # key -> (mean, std or None, n), None where no run has it
    protocol: str | None = None  # the published protocol its config follows


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _core_defaults() -> dict:
    """The core keys of the sections whose defaults do not depend on a component."""
    sections = {"data": DataConfig, "scenario": ScenarioConfig, "train": TrainConfig, "eval": EvalConfig}
    return flatten({name: to_dict(cls()) for name, cls in sections.items()})


def _number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _results_problem(results) -> str | None:
    """What keeps a parsed results.json from being compared, or None."""
    if not isinstance(results, dict) or not isinstance(results.get("steps"), list) or not results["steps"]:
        return "results.json is not a cml results file (no list of steps)"
    if not all(
        isinstance(s, dict) and all(_number(s.get(k, "")) for k in ("map", "cf1", "of1")) for s in results["steps"]
    ):
        return "results.json: a step lacks map, cf1 or of1"
    if not all(_number(s.get("macro_f1")) for s in results["steps"]):
        return "results.json: a step's macro_f1 is not a number"
    if not all(_number(results.get(k, "")) for k in ("avg_map", "last_map", "avg_forgetting")):
        return "results.json lacks avg_map, last_map or avg_forgetting"
    if not isinstance(results.get("n_steps", 0), int):
        return "results.json: n_steps is not a number"
    return None


def _load(folder: Path) -> Run:
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        path = folder / "config.yaml"
        config = safeyaml.load(path.read_bytes(), str(path))  # no aliases: a shared folder may be hostile
    except (OSError, ValueError, yaml.YAMLError, RecursionError) as err:
        first = " ".join(str(err).split())[:200]
        raise UserError(f"{folder}: cannot read the run's results.json / config.yaml ({first})") from None
    problem = "config.yaml is not a mapping" if not isinstance(config, dict) else _results_problem(results)
    if problem:
        raise UserError(f"{folder}: not a cml run ({problem})")
    flat = {**_core_defaults(), **flatten(as_it_ran(config))}
    # the data: their content digest, or for a run written before it existed, their location
    flat["data_digest"] = results.get("data_digest") or f"unknown, data.root {flat.get('data.root')}"
    if "pretrained" in results:  # the starting weights by content, not by path (older runs: the path)
        flat["model.pretrained"] = results["pretrained"]
    return Run(folder, flat, results)


def find_runs(paths: list[Path]) -> list[Run]:
    folders: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path}: no such folder")
        found = (
            [path]
            if (path / "results.json").is_file()
            else sorted(r.parent for r in path.rglob("results.json") if (r.parent / "config.yaml").is_file())
        )
        if not found:
            raise UserError(f"{path}: no run directory (a folder with results.json and config.yaml) in it")
        folders += [f for f in found if f not in folders]
    runs = []
    for folder in folders:
        try:
            run = _load(folder)
        except UserError as err:  # one bad directory: said, and the others still compared
            print(f"note: left out: {err}", file=sys.stderr)
            continue
        done, planned = len(run.results["steps"]), run.results.get("n_steps")
        if planned and done < planned:
            print(f"note: {folder} left out: unfinished ({done} of {planned} steps)", file=sys.stderr)
            continue
        runs.append(run)
    if not runs:
        raise UserError("no finished run to compare")
    return runs


def _key(run: Run) -> str:
    return json.dumps({k: v for k, v in run.config.items() if not ignored(k)}, sort_keys=True, default=str)


def _mean_std(values: list) -> tuple[float | None, float | None, int]:
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return None, None, 0
    return statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else None, len(kept)


def _short(value) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def _in_use(key: str, config: dict) -> bool:
    """Only the run's own keys count (another model's options are absent from its config); plugin
    options only for runs with a plugin of that section (the replay buffers share
    `strategy.replay`), or whose strategy has that name (`strategy.l3a`); a plugin no longer
    registered keeps its name as its section."""
    if key not in config:
        return False
    parts = key.split(".")
    if parts[0] != "strategy" or len(parts) < 3 or parts[1] == config.get("strategy.name"):
        return True
    plugins = config.get("strategy.plugins", [])
    return parts[1] in {section_of(PLUGINS.get(p)) if p in PLUGINS.names() else p for p in plugins}


def group_runs(runs: list[Run]) -> list[Group]:
    by_key: dict[str, Group] = {}
    for run in runs:
        group = by_key.setdefault(_key(run), Group([]))
        twin = next((r for r in group.runs if r.config.get("seed") == run.config.get("seed")), None)
        if twin is not None:
            print(
                f"note: {run.path} left out: the same configuration, data and seed as {twin.path} "
                "(a copy? it is not another seed)",
                file=sys.stderr,
            )
            continue
        group.runs.append(run)
    groups = list(by_key.values())
    keys = sorted(k for k in {k for g in groups for k in g.runs[0].config} - set(SHOWN) if not ignored(k))
    differing = [k for k in keys if len({json.dumps(g.runs[0].config.get(k), default=str) for g in groups}) > 1]
    for g in groups:
        c = g.runs[0].config
        strategy = "+".join([c.get("strategy.name", "?"), *c.get("strategy.plugins", [])])
        parts = [strategy, f"{c.get('model.name', '?')}/{c.get('model.backbone', '?')}"]
        parts += [f"{k.removeprefix('strategy.')}={_short(c.get(k))}" for k in differing if _in_use(k, c)]
        g.label = ", ".join(parts)
        g.protocol = protocol_of(c)
        for _, key in COLUMNS:
            values = [r.value(key) for r in g.runs if r.has(key)]
            g.stats[key] = _mean_std(values) if values else None
        n_steps = max(len(r.results["steps"]) for r in g.runs)
        g.stats["map_per_step"] = [
            _mean_std([r.results["steps"][i]["map"] for r in g.runs if i < len(r.results["steps"])])
            for i in range(n_steps)
        ]
    return groups


def plot(groups: list[Group], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    # long labels (runs of several models) wrapped, and the figure grown to hold every line of them
    labels = [textwrap.fill(f"{g.label} (n={len(g.runs)})", 100, subsequent_indent="    ") for g in groups]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig = Figure(figsize=(9, 4.5 + 0.2 * lines), layout="constrained")
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(len(groups))]
    longest = 0
    for g, color, label in zip(groups, colors, labels):
        points = [(i, m, s) for i, (m, s, _) in enumerate(g.stats["map_per_step"]) if m is not None]
        x, mean = [p[0] for p in points], [p[1] for p in points]
        longest = max(longest, len(g.stats["map_per_step"]))
        ax.plot(x, mean, marker="o", color=color, label=label)
        if len(g.runs) > 1:
            std = [p[2] or 0.0 for p in points]
            ax.fill_between(
                x,
                [m - s for m, s in zip(mean, std)],
                [m + s for m, s in zip(mean, std)],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
    ax.set_title("mAP after each step (mean ± std over seeds)")
    ax.set_xlabel("step")
    ax.set_ylabel("mAP on the classes seen so far (%)")
    ax.set_xticks(range(longest))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, format="png", bbox_inches="tight")  # nothing of the legend clipped
    except OSError as err:
        raise UserError(f"--out: cannot write {path} ({err.strerror or err}); expected a writable .png path") from None


def check_out(out: Path) -> None:
    """Before reading any run: the PNG's path is one matplotlib will write under this very name."""
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; expected the name of a .png file, e.g. {out / 'compare.png'}")
    if out.suffix.lower() != ".png":
        raise UserError(f"--out: {out}: expected a .png file name (the plot is a PNG)")


def compare(paths: list[Path], out: Path, as_json: bool = False, fmt: str = "markdown") -> list[Group]:
    check_out(out)
    groups = group_runs(find_runs(paths))
    print(json.dumps(to_json(groups), indent=2) if as_json else render(groups, fmt))
    plot(groups, out)
    print(f"wrote {out}", file=sys.stderr)
    return groups
