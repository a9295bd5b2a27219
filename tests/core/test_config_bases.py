"""configs/ as protocol and method bases plus short deltas (`base:`): every shipped config resolves
to the values recorded before the split (tests/core/data/resolved_configs.json), the method files
are short deltas that name a base, and no two files (bases included) repeat a block of lines, so
that the tree does not drift back into full copies of each other."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
RECORDED = json.loads((ROOT / "tests/core/data/resolved_configs.json").read_text())

# a file whose name ends in one of these is a method on some protocol (coco_b0_c10_krt.yaml, ...)
METHOD_SUFFIXES = ("_krt", "_csc", "_l3a", "_pod", "_multilane", "_finetune", "_prs")
# thresholds: the restructured tree's longest method file has 19 non-comment lines and its longest
# run shared by two files is 5 lines; the full copies it replaced had 27 to 48 and shared runs of 39
MAX_METHOD_LINES = 25
MAX_SHARED_RUN = 5


def content_lines(text: str) -> list[str]:
    """The non-comment lines: blank lines, whole-line and trailing comments dropped."""
    out = []
    for line in text.splitlines():
        code = "" if line.lstrip().startswith("#") else line.split(" #", 1)[0].rstrip()
        if code.strip():
            out.append(code)
    return out


def longest_shared_run(a: list[str], b: list[str]) -> int:
    """The longest run of consecutive lines that A and B both contain."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def config_files() -> dict[str, list[str]]:
    files = sorted(CONFIGS.glob("*.yaml")) + sorted(CONFIGS.glob("base/*.yaml"))
    return {p.relative_to(CONFIGS).as_posix(): content_lines(p.read_text()) for p in files}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_config_resolves_to_recorded_value(name):
    from cml.config import load_raw

    assert load_raw(CONFIGS / name) == RECORDED[name]


def test_the_recorded_configs_are_the_shipped_ones():
    assert sorted(RECORDED) == sorted(p.name for p in CONFIGS.glob("*.yaml"))


def test_method_files_are_short_deltas_on_a_base():
    methods = {n: lines for n, lines in config_files().items() if "/" not in n and n[:-5].endswith(METHOD_SUFFIXES)}
    assert len(methods) >= 25  # the suffixes still name the method files
    for name, lines in methods.items():
        assert any(line.startswith("base: ") for line in lines), f"{name}: a method file names its base"
        assert len(lines) <= MAX_METHOD_LINES, f"{name}: {len(lines)} non-comment lines (at most {MAX_METHOD_LINES})"


def test_partial_bases_say_so_on_their_first_line():
    for path in sorted(CONFIGS.glob("base/*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Partial config"), f"{path.name}: first line {first!r}"


def test_no_two_config_files_repeat_a_block_of_lines():
    files = config_files()
    names = sorted(files)
    repeated = [
        f"{a} / {b}: {run} lines"
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if (run := longest_shared_run(files[a], files[b])) > MAX_SHARED_RUN
    ]
    assert not repeated, (
        f"identical runs of more than {MAX_SHARED_RUN} non-comment lines (move them to a base): {repeated}"
    )
