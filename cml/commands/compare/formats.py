"""`cml compare`'s tables: markdown, LaTeX (booktabs) and CSV, and its JSON.

Two CF1 conventions share the name in the literature (docs/metrics.md): cml's `cf1` is ML-GCN's,
2 CP CR / (CP + CR); the KRT lineage (KRT, CSC, L3A) reports the mean of the per-class F1s, cml's
`macro_f1`. Each column says which. A configuration on a published protocol
(cml/protocols/published.py) is followed by that protocol's published rows, marked as such with
their source and starting weights.
"""

from __future__ import annotations

import csv
import io

from cml.protocols.published import published

COLUMNS = (  # (header, key in results.json: the run's, or its last step's for the F1s)
    ("Avg mAP", "avg_map"),
    ("Last mAP", "last_map"),
    ("Avg forgetting", "avg_forgetting"),
    ("CF1 (ML-GCN)", "cf1"),
    ("CF1 (per-class mean, KRT)", "macro_f1"),
    ("OF1", "of1"),
)


def _rows(groups) -> list[dict]:
    """The measured rows, each protocol's published rows after the last configuration on it."""
    last = {g.protocol: i for i, g in enumerate(groups) if g.protocol}
    rows = []
    for i, g in enumerate(groups):
        seeds = " ".join(str(r.config.get("seed")) for r in g.runs)
        rows.append({"kind": "measured", "label": g.label, "n": str(len(g.runs)), "seeds": seeds, "stats": g.stats})
        rows[-1]["protocol"] = g.protocol or ""
        if g.protocol and last[g.protocol] == i:
            for e in published(g.protocol):
                rows.append(
                    {
                        "kind": "published",
                        "label": f"published, {g.protocol}: {e['method']}; {e['source']}; weights: {e['weights']}",
                        "n": "-",
                        "protocol": g.protocol,
                        "entry": e,
                        "stats": {key: None if e.get(key) is None else (e[key], None, None) for _, key in COLUMNS},
                    }
                )
    return rows


def _cell(stat, pm: str) -> str:
    """mean ± std of the measured, the number as published, "-" when not recorded or not published."""
    if stat is None:
        return "-"
    mean, std, n = stat
    if mean is None:
        return "n/a"
    if n is None:
        return str(mean)
    return f"{mean:.2f}" if std is None else f"{mean:.2f}{pm}{std:.2f}"


def markdown_table(groups) -> str:
    header = ["configuration", "seeds", *(name for name, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in _rows(groups):
        cells = [row["label"].replace("|", "/"), row["n"], *(_cell(row["stats"][k], " ± ") for _, k in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def _latex(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


def latex_table(groups) -> str:
    """A booktabs tabular (\\usepackage{booktabs}); the published rows in italics."""
    header = ["configuration", "seeds", *(name for name, _ in COLUMNS)]
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule"]
    lines += [" & ".join(header) + r" \\", r"\midrule"]
    for row in _rows(groups):
        cells = [_latex(row["label"]), row["n"], *(_cell(row["stats"][k], r" $\pm$ ") for _, k in COLUMNS)]
        if row["kind"] == "published":
            cells = [rf"\textit{{{c}}}" for c in cells]
        lines.append(" & ".join(cells) + r" \\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"])


def csv_table(groups) -> str:
    """One row per configuration (and per published method): mean, std and n of each metric;
    an empty cell where there is no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["configuration", "kind", "protocol", "seeds", "source", "weights"]
        + [f"{name} {part}" for name, _ in COLUMNS for part in ("mean", "std", "n")]
    )
    for row in _rows(groups):
        entry = row.get("entry", {})
        cells = [entry.get("method", row["label"]), row["kind"], row["protocol"], row.get("seeds", "")]
        cells += [entry.get("source", ""), entry.get("weights", "")]
        for _, key in COLUMNS:
            cells += ["" if v is None else v for v in (row["stats"][key] or (None, None, None))]
        writer.writerow(cells)
    return out.getvalue().rstrip("\n")


def to_json(groups) -> list[dict]:
    out = []
    for g in groups:
        entry = {
            "label": g.label,
            "runs": [str(r.path) for r in g.runs],
            "seeds": [r.config.get("seed") for r in g.runs],
        }
        for _, key in COLUMNS:  # null: no run of the group records the metric
            entry[key] = None if g.stats[key] is None else dict(zip(("mean", "std", "n"), g.stats[key]))
        entry["map_per_step"] = [dict(zip(("mean", "std", "n"), s)) for s in g.stats["map_per_step"]]
        entry["protocol"] = g.protocol
        entry["published"] = published(g.protocol) if g.protocol else []
        out.append(entry)
    return out


def render(groups, fmt: str) -> str:
    return {"markdown": markdown_table, "latex": latex_table, "csv": csv_table}[fmt](groups)
