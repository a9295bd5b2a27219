"""cml/protocols/published.yaml: the README's published numbers, the same in both (parsed from the
README's "KRT protocols" table, so the two cannot drift), and each protocol config matched to its
protocol (issue 26)."""

import re
from pathlib import Path

import pytest

from cml.commands.compare import flatten
from cml.config import load_config, to_dict
from cml.core.errors import UserError
from cml.protocols.published import parse, protocol_of, protocols

ROOT = Path(__file__).resolve().parents[2]
TABLE = "### KRT protocols: methods, commands, published numbers"


def readme_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text[text.index(TABLE) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| protocol | method |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows and all(len(r) == 5 for r in rows)
    return rows


def protocol_names(cell: str) -> list[str]:
    """'COCO B0-C10, B40-C10, VOC B0-C4' -> the three names: a split alone takes the dataset before it."""
    names, dataset = [], ""
    for part in cell.split(", "):
        if " " in part:
            dataset = part.split(" ")[0]
        names.append(part if " " in part else f"{dataset} {part}")
    return names


def test_the_published_file_holds_the_readme_numbers():
    rows = readme_rows()
    readme, methods = {}, {r[1] for r in rows}
    for names, method, _, published, _ in rows:
        found = re.fullmatch(r"(-|\d+\.\d) / (\d+\.\d)( \(.+\))?", published)
        for name in protocol_names(names):
            assert name in protocols(), f"README's protocol {name!r} is not in published.yaml"
            if found:
                readme[(name, method)] = (None if found[1] == "-" else float(found[1]), float(found[2]))
    assert readme[("COCO B0-C10", "KRT-R (20 per class)")] == (77.0, 70.9)  # read by hand from the README
    assert readme[("COCO B0-C10", "CSC")] == (None, 72.8)
    # every entry of a method the README lists, under any protocol, is a README row with the same numbers
    in_file = {
        (name, e["method"]): (e.get("avg_map"), e["last_map"])
        for name, spec in protocols().items()
        for e in spec["published"]
        if e["method"] in methods
    }
    assert in_file == readme


def config_protocol(config: str) -> str | None:
    """As compare sees a run of CONFIG: its saved config.yaml is the whole resolved config."""
    return protocol_of(flatten(to_dict(load_config(ROOT / "configs" / config))))


@pytest.mark.parametrize(
    "prefix, protocol",
    [
        ("coco_b0_c10", "COCO B0-C10"),
        ("coco_b40_c10", "COCO B40-C10"),
        ("voc_b0_c4", "VOC B0-C4"),
        ("voc_b10_c2", "VOC B10-C2"),
        ("nuswide_b0_c9", "NUS-WIDE B0-C9"),
    ],
)
def test_every_config_of_a_protocol_matches_it(prefix, protocol):
    configs = sorted(p.name for p in (ROOT / "configs").glob(f"{prefix}*.yaml"))
    assert configs and {c: config_protocol(c) for c in configs} == dict.fromkeys(configs, protocol)


@pytest.mark.parametrize("config", ["demo.yaml", "demo_krt.yaml", "coco_static.yaml"])
def test_other_configs_match_no_protocol(config):
    assert config_protocol(config) is None


def test_a_bad_entry_is_one_line_naming_it():
    good = {"method": "M", "source": "S", "weights": "w", "avg_map": 1.0}
    raw = {"weights": {"w": "text"}, "protocols": {"P": {"match": {"data.dataset": "coco"}, "published": [good]}}}
    assert parse(raw)["P"]["published"] == [{**good, "weights": "text"}]
    for bad, says in (
        ({"avg_map": "77"}, "P: M: avg_map '77' is not a number"),
        ({"cf1_krt": 1.0}, "P: M: unknown keys ['cf1_krt']"),
        ({"weights": "other"}, "P: M: weights 'other' is not one of ['w']"),
    ):
        raw["protocols"]["P"]["published"] = [{**good, **bad}]
        with pytest.raises(UserError, match=re.escape(says)):
            parse(raw)
