"""The one vocabulary of model capabilities (`cml.core.registry.CAPABILITIES`): models declare what
they have, plugins and strategies what they need, and the config refuses a pairing whose needs the
model lacks, before torch. Parametrised over the registries, so a new component is checked by
being registered."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cml.core.errors import UserError
from cml.core.registry import CAPABILITIES, MODELS, PLUGINS, REGISTRIES, STRATEGIES, Model, Registry

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
NEEDING = [("plugin", name, PLUGINS.get(name).needs) for name in PLUGINS.names() if PLUGINS.get(name).needs] + [
    ("strategy", name, STRATEGIES.get(name).needs) for name in STRATEGIES.names() if STRATEGIES.get(name).needs
]
CASES = [(kind, name, model) for kind, name, _ in NEEDING for model in MODELS.names()]


def overrides(kind: str, name: str, model: str) -> list[str]:
    return [f"model.name={model}", f"strategy.plugins=[{name}]" if kind == "plugin" else f"strategy.name={name}"]


def test_every_declared_name_is_in_the_vocabulary():
    for registry in REGISTRIES:
        for declaration in registry.declarations():
            for attr in ("capabilities", "needs"):
                names = getattr(declaration, attr, frozenset())
                assert isinstance(names, frozenset) and names <= CAPABILITIES.keys(), (declaration.name, attr)
    assert all(meaning and "\n" not in meaning for meaning in CAPABILITIES.values())


def test_every_capability_is_had_and_read():
    """No dead words: some model has each capability, and each is needed (`needs`) or read by a
    plugin's or strategy's own check (lwf's label_features, needed only when feature_weight > 0)."""
    needed = {c for _, _, needs in NEEDING for c in needs}
    sources = "".join(
        Path(sys.modules[d.module].__file__).read_text() for r in (PLUGINS, STRATEGIES) for d in r.declarations()
    )
    for capability in CAPABILITIES:
        assert MODELS.names(capabilities=capability), f"no model has {capability}"
        assert capability in needed or f'"{capability}"' in sources, f"nothing reads {capability}"


def test_an_unknown_capability_is_refused_when_registered():
    registry = Registry("model", "cml.models", Model)
    registry._discovered = True
    with pytest.raises(
        UserError,
        match=r"somewhere\.mine: capabilities: unknown capability 'task_token'; "
        r"did you mean 'task_tokens'\?; the vocabulary \(cml\.core\.registry\.CAPABILITIES\)",
    ):
        registry.add(Model(build=print, capabilities=frozenset({"task_token"})), "somewhere.mine")
    with pytest.raises(UserError, match="somewhere.mine: capabilities: expected a set of capability names"):
        registry.add(Model(build=print, capabilities="task_tokens"), "somewhere.mine")
    added = registry.add(Model(build=print, capabilities=("task_tokens",)), "somewhere.mine")  # a tuple will do
    assert added.capabilities == frozenset({"task_tokens"}) and registry.names(capabilities="task_tokens") == ["mine"]


def test_names_filter_on_a_capability():
    for capability in CAPABILITIES:
        assert MODELS.names(capabilities=capability) == [
            n for n in MODELS.names() if capability in MODELS.get(n).capabilities
        ]
    assert MODELS.names(capabilities=frozenset()) == MODELS.names()
    assert "pod" in PLUGINS.names(needs="backbone_stages")


@pytest.fixture(scope="module")
def outcomes():
    """Every (component, model) pairing through `load_config`, in one fresh interpreter that must
    not import torch: the refusal comes with the config, before anything heavy."""
    code = (
        "import json, sys\n"
        "from cml.config import load_config\n"
        "from cml.core.errors import UserError\n"
        "out = {}\n"
        "for key, demo, sets in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        load_config(demo, sets)\n"
        "        out[key] = None\n"
        "    except UserError as err:\n"
        "        out[key] = str(err)\n"
        "heavy = [m for m in ('torch', 'avalanche', 'timm') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'out': out}))\n"
    )
    cases = [("/".join(case), DEMO, overrides(*case)) for case in CASES]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["heavy"] == []
    return result["out"]


@pytest.mark.parametrize("kind,name,model", CASES, ids=["-".join(c) for c in CASES])
def test_a_model_without_what_is_needed_is_refused_with_the_config(outcomes, kind, name, model):
    needs = (PLUGINS if kind == "plugin" else STRATEGIES).get(name).needs
    missing = sorted(needs - MODELS.get(model).capabilities)
    message = outcomes[f"{kind}/{name}/{model}"]
    if not missing:  # it may still be refused, by another check, but not for a capability
        assert message is None or "needs a model with" not in message, message
        return
    who = name if kind == "plugin" else f"strategy {name}"
    key = "strategy.plugins" if kind == "plugin" else "strategy.name"
    assert message is not None and "\n" not in message
    assert f"(with --set): {key}: {who} needs a model with {missing[0]} ({CAPABILITIES[missing[0]]})" in message
    assert all(c in message for c in missing) and f"; model {model} lacks " in message
    assert message.endswith(": " + ", ".join(MODELS.names(capabilities=needs)))


def test_the_design_docs_table_is_the_vocabulary():
    """docs/design.md's table: one row per capability with its meaning, the models that have it and
    every component that needs it."""
    text = (ROOT / "docs" / "design.md").read_text()
    table = text.split("| capability | the model has | has it | needed by |\n|---|---|---|---|\n")[1].split("\n\n")[0]
    cells = [[c.strip() for c in line.strip("| ").split(" | ")] for line in table.splitlines()]
    rows = {first.strip("`"): rest for first, *rest in cells}
    assert list(rows) == sorted(CAPABILITIES)
    for capability, (meaning, has, needed_by) in rows.items():
        assert meaning == CAPABILITIES[capability]
        assert has == ", ".join(MODELS.names(capabilities=capability))
        assert all(name in needed_by for _, name, needs in NEEDING if capability in needs)
