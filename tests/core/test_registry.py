"""The contract every declaration meets, whatever its kind: parametrised over the registries, so a
new component is checked by being registered."""

import dataclasses
import importlib
import warnings
from pathlib import Path

import pytest

from cml.config import describe, load_config
from cml.core import registry, schema
from cml.core.errors import UserError
from cml.core.registry import MODELS, PLUGINS, REGISTRIES, Plugin, Registry, section_of

DECLARATIONS = [(r.kind, d) for r in REGISTRIES for d in r.declarations()]
IDS = [f"{kind}-{d.name}" for kind, d in DECLARATIONS]


def test_every_kind_is_populated():
    """Every module or package of a kind's folder that assigns DECLARATION is one registered
    component; the others (shared implementation, helpers) are skipped without being imported."""

    from cml.core.registry import declares

    def files(package):
        folder = Path(importlib.import_module(package).__file__).parent
        return {
            p.stem.replace("_", "-")
            for p in folder.iterdir()
            if p.name != "__init__.py" and p.name != "__pycache__" and declares(p.with_suffix("") if p.suffix else p)
        }

    assert {r.kind: {n.replace("_", "-") for n in r.names()} for r in REGISTRIES} == {
        r.kind: files(r.package) for r in REGISTRIES
    }
    assert not declares(Path(importlib.import_module("cml.datasets").__file__).parent / "imagefiles")
    assert all(r.names() for r in REGISTRIES)


@pytest.mark.parametrize("kind, declaration", DECLARATIONS, ids=IDS)
def test_declaration(kind, declaration):
    module_stem = declaration.module.rsplit(".", 1)[-1]
    assert declaration.name == module_stem or declaration.name == module_stem.replace("_", "-")
    assert declaration.help and callable(declaration.build)
    if declaration.options is not None:  # defaults valid under their own ranges, and documented
        defaults = declaration.options()
        rebuilt = schema.build(declaration.options, dataclasses.asdict(defaults), "", "test")
        assert rebuilt == defaults
        keys = {key for key, *_ in describe()}
        prefix = (
            "model.options"
            if kind == "model"
            else {"dataset": "data", "plugin": "strategy", "loss": "train", "strategy": "strategy"}[kind]
            + "."
            + section_of(declaration)
        )
        assert {f"{prefix}.{f.name}" for f in dataclasses.fields(declaration.options)} <= keys


@pytest.mark.parametrize("name", PLUGINS.names())
def test_plugin_requirements_are_checked_with_the_config(name):
    declaration = PLUGINS.get(name)
    for key, value in declaration.requires.items():
        other = {"partial": "full"}.get(value) or next(
            (n for n in MODELS.names() if n != value) if key == "model.name" else iter(["x"])
        )
        with pytest.raises(UserError, match=f"strategy.plugins: {name} needs {key}: {value}"):
            load_config(None, [f"strategy.plugins=[{name}]", f"{key}={other}"])


def test_at_most_one_replay_buffer():
    first, second = PLUGINS.names(kind="replay")[:2]
    with pytest.raises(UserError, match=f"{first} and {second} are both replay buffers"):
        load_config(None, [f"strategy.plugins=[{first},{second}]"])


def test_names_come_from_the_files_and_duplicates_warn():
    reg = Registry("plugin", "cml.plugins", Plugin)
    reg._discovered = True  # only what is added here
    first = reg.add(Plugin(build=print, help="a"), "somewhere.counter")
    assert first.name == "counter" and reg.names() == ["counter"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = reg.add(Plugin(build=print, help="b"), "elsewhere.counter")
    assert "plugin 'counter' is declared by somewhere.counter and by elsewhere.counter" in str(caught[0].message)
    assert reg.get("counter") is second
    with pytest.raises(KeyError, match="unknown plugin 'countr'; did you mean 'counter'"):
        reg.get("countr")


def test_unknown_names_hint_the_closest():
    with pytest.raises(UserError, match="strategy.plugins: unknown plugin 'lfw'; did you mean 'lwf'"):
        load_config(None, ["strategy.plugins=[lfw]"])
    with pytest.raises(UserError, match="train.loss: unknown loss 'bec'; did you mean 'bce'"):
        load_config(None, ["train.loss=bec"])


def test_a_module_without_a_declaration_is_one_line():
    with pytest.raises(UserError, match="imports: json: expected a module-level DECLARATION"):
        registry.import_components(["json"], "config: imports")


def test_model_option_help_names_the_model_once():
    """The reference prefixes each model option's help with the model's name; a help that also
    starts with it read 'dlfl: dlfl: ...' in docs/config.md."""
    from cml.config import model_option_rows

    rows = model_option_rows()
    assert rows and all(
        not help_text.split(": ", 1)[1].startswith(help_text.split(": ", 1)[0] + ": ") for _, _, _, help_text in rows
    )


def test_the_registry_route_builds_a_named_declared_plugin():
    """`PLUGINS.get(name).build(cfg, scenario)`, the public route, gives the plugin its name, kind
    and uses_previous_model (without them the strategy kept no previous model and LwF never
    distilled, silently); `build_plugins` takes the same route."""
    lwf = PLUGINS.get("lwf").build(load_config(None, []), None)
    assert (lwf.name, lwf.kind, lwf.uses_previous_model) == ("lwf", "loss", True)
    plugins = Registry("plugin", "cml.plugins", Plugin)
    plugins.add(Plugin(build=lambda cfg, scenario: type("Bare", (), {})(), kind="penalty"), "ext.bare")
    bare = plugins.get("bare").build(None, None)
    assert (bare.name, bare.kind, bare.uses_previous_model) == ("bare", "penalty", False)
