"""Imports run one way: no module imports one of a higher layer, no cycles, no file over 300 lines.

The layers, bottom to top (docs/design.md): core, config, then the components and the machinery
built on them, then the commands. The import graph is read from the source with `ast` (module
level and function level alike; `if TYPE_CHECKING:` blocks are left out, they never run)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [
    ["cml.errors", "cml.safeyaml", "cml.hints", "cml.schema", "cml.registry", "cml.launch", "cml.distributed", "cml.rundir"],
    ["cml.config_checks", "cml.config"],
    ["cml.datasets", "cml.imagefiles"],
    ["cml.models", "cml.losses"],
    ["cml.scenarios"],
    ["cml.protocols"],
    ["cml.evaluation"],
    ["cml.plugins"],
    ["cml.strategies"],
    ["cml.checkpoint", "cml.run", "cml.plan", "cml.compare", "cml.run_directory"],
    ["cml.cli", "cml.__main__"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module == "cml":  # the package's own __init__: a docstring
        return 0
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of tests/core/test_layers.py")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from cml import x`
    return {m for m in found if m.startswith("cml.")}


SOURCES = sorted((ROOT / "cml").rglob("*.py"))
MODULES = {module_name(p) for p in SOURCES}
GRAPH = {module_name(p): {m for m in imports(p) if m in MODULES} for p in SOURCES}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_from_a_higher_layer(module):
    higher = [m for m in GRAPH[module] if layer_of(m) > layer_of(module)]
    assert not higher, f"{module} (layer {layer_of(module)}) imports {higher}"


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("path", [p for p in SOURCES + sorted((ROOT / "tests").rglob("*.py"))
                                  + sorted((ROOT / "bench").glob("*.py"))], ids=str)
def test_no_file_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300, f"{path.relative_to(ROOT)}: split it by concern"


def test_declarations_import_without_torch():
    """Every registry's declarations, and the config check, load without torch or Avalanche."""
    import subprocess
    import sys

    code = ("import sys; from cml import registry; from cml.config import load_config, describe; "
            "[r.declarations() for r in registry.REGISTRIES]; load_config(None); describe(); "
            "heavy = [m for m in ('torch', 'avalanche', 'timm') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
