"""Imports run one way: no module imports one of a higher layer, no cycles, no file over 300 lines.

The layers, bottom to top (docs/design.md): core, config, then the components and the machinery
built on them, then the commands. The import graph is read from the source with `ast` (module
level and function level alike; `if TYPE_CHECKING:` blocks are left out, they never run)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [
    ["cml.core"],
    ["cml.config"],
    [
        "cml.runtime.files",
        "cml.runtime.lock",
        "cml.runtime.signals",
        "cml.runtime.launch",
        "cml.runtime.distributed",
        "cml.runtime.run_directory",
        "cml.runtime",
    ],
    ["cml.datasets"],
    ["cml.models", "cml.losses"],
    ["cml.protocols"],
    ["cml.scenarios"],
    ["cml.evaluation"],
    ["cml.plugins"],
    ["cml.strategies"],
    [
        "cml.runtime.checkpoint",
        "cml.runtime.export",
        "cml.experiment",
        "cml.commands.run",
        "cml.commands.plan",
        "cml.commands.compare",
    ],
    ["cml.commands", "cml.__main__"],
]
REGISTRY_PACKAGES = {
    "DATASETS": "cml.datasets",
    "MODELS": "cml.models",
    "PLUGINS": "cml.plugins",
    "PROTOCOLS": "cml.protocols",
    "LOSSES": "cml.losses",
    "STRATEGIES": "cml.strategies",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module == "cml":  # the package's own __init__: names resolved lazily, by string
        return 0
    best = None  # the longest matching prefix decides (cml.runtime.checkpoint before cml.runtime)
    for index, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (index, len(p))
    if best is not None:
        return best[0]
    raise AssertionError(f"{module} is in no layer of tests/core/test_layers.py")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
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


def builds_through(path: Path) -> set[str]:
    """The registries whose components this module builds (`REG.get(name).build(...)`, directly or
    through a name assigned from `REG.get(...)`): building runs the component's implementation, an
    import the module's own import lines do not show."""
    tree = ast.parse(path.read_text())
    from_get = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _registry_get(node.value):
            from_get.update({t.id: _registry_get(node.value) for t in node.targets if isinstance(t, ast.Name)})
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "build":
            name = _registry_get(node.value) or (
                from_get.get(node.value.id) if isinstance(node.value, ast.Name) else None
            )
            if name:
                found.add(name)
    return found


def _registry_get(node) -> str | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in REGISTRY_PACKAGES
    ):
        return node.func.value.id
    return None


def declaration_modules() -> list[Path]:
    from cml.core.registry import declares

    return [
        p
        for p in SOURCES
        if p.parent.name != "cml"
        and declares(p.parent if p.name == "__init__.py" else p.with_suffix(""))
        and module_name(p).split(".")[1] in {v.split(".")[1] for v in REGISTRY_PACKAGES.values()}
    ]


def module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {m for m in found if m.startswith("cml.")}


SOURCES = sorted((ROOT / "cml").rglob("*.py"))
MODULES = {module_name(p) for p in SOURCES}
GRAPH = {module_name(p): {m for m in imports(p) if m in MODULES} for p in SOURCES}
for _path in SOURCES:  # building a registry's component imports its package (see builds_through)
    GRAPH[module_name(_path)] |= {REGISTRY_PACKAGES[r] for r in builds_through(_path)} - {module_name(_path)}


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
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target) :] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))],
    ids=str,
)
def test_no_file_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300, f"{path.relative_to(ROOT)}: split it by concern"


@pytest.mark.parametrize("path", declaration_modules(), ids=lambda p: module_name(p))
def test_declarations_import_only_core(path):
    """Config validation, `cml keys` and the docs read every declaration: at module level a
    declaration imports only cml.core and its own kind's package, so reading it can neither reach
    a higher layer nor loop (its implementation is imported inside build())."""
    kind = ".".join(module_name(path).split(".")[:2])
    outside = [m for m in module_level_imports(path) if not m.startswith(("cml.core", kind + "."))]
    assert not outside, f"{module_name(path)} imports {outside} at module level; import it inside build()"


def test_building_through_a_registry_counts_as_an_import():
    """protocols.steps builds protocols, imagefiles.load_data builds datasets, strategies/_base builds losses."""
    assert "cml.protocols" in GRAPH["cml.protocols.steps"]
    assert "cml.datasets" in GRAPH["cml.datasets.imagefiles"]


def test_declarations_import_without_torch():
    """Every registry's declarations, and the config check, load without torch or Avalanche."""
    import subprocess
    import sys

    code = (
        "import sys; from cml.core import registry; from cml.config import load_config, describe; "
        "[r.declarations() for r in registry.REGISTRIES]; load_config(None); describe(); "
        "heavy = [m for m in ('torch', 'avalanche', 'timm') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
