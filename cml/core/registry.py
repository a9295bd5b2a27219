"""One registry per kind of component, each the only list of its kind.

A component declares itself in one module, `cml/<kind>/<name>.py` (or the package
`cml/<kind>/<name>/__init__.py` when its implementation needs torch): the module-level
`DECLARATION` holds its option schema, its facts and `build`, which imports the implementation
only when the component is built. Declaration modules import nothing heavy, so the config is
checked, `cml keys` listed and the docs generated without torch. What a model offers plugins and
strategies is said in one vocabulary, `CAPABILITIES`, that models declare and the others need.

The name is the module's (`cml/models/linear.py` declares `linear`) unless the declaration gives
one (`class-incremental`, which is no module name). Modules listed in the config's `imports:` add
components of any kind (docs/design.md, "Adding a component"); a name declared twice warns and the
later declaration wins.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from cml.core.errors import UserError
from cml.core.hints import did_you_mean

# What a model offers the components that build on it, one name each: a Model declares the ones
# it has (`capabilities`), a Plugin or a Strategy the ones it needs (`needs`), and the config check
# refuses a choice whose needs the model lacks, naming the capability, before torch. One list, so
# that a plugin does not test a boolean of its own nor a strategy `hasattr` on the built model.
CAPABILITIES: dict[str, str] = {
    "analytic": "`expand(embedding)` and `.analytic`, the closed-form classifier that the l3a strategy fits",
    "backbone_stages": "its timm backbone is `.backbone`, whose stages pod distils",
    "embed_classify": "`embed(x)` gives its `.backbone`'s pooled feature and `classify(embedding)` the "
    "outputs from it: probe and l3a cache the one and train the other",
    "label_features": "`forward(x, full=True)['label_features']` is (B, C, D), one feature per class",
    "label_graph": "`.cooccurrence` and `.gcn`, the label graph csc fills from each step's labels",
    "task_tokens": "`forward(x, full=True)['tokens']` holds one token per step, which tdl distils",
}


@dataclass(frozen=True)
class Declaration:
    """What every component declares.

    build: makes the component; imports its implementation (torch, Avalanche) when called.
    options: the schema dataclass of its options (`cml.core.schema.option` fields), or None.
    check: `check(config, options) -> message | None`, a torch-free check across config keys.
    """

    build: Callable[..., Any]
    options: Optional[type] = None
    help: str = ""
    name: str = ""
    check: Optional[Callable[[Any, Any], Optional[str]]] = None
    module: str = field(default="", compare=False)


@dataclass(frozen=True)
class Dataset(Declaration):
    """Options at `data.<name>`; `build(cfg) -> MultiLabelData`."""

    needs_root: bool = False  # data.root is required


@dataclass(frozen=True)
class Model(Declaration):
    """Options at `model.options`; `build(backbone, pretrained, options, image_size) -> MultiLabelModel`.

    test_settings: how to build a tiny, fast variant for 32-px images, kept beside the model (as
    timm registers `test_vit` beside the ViT) so that the contract tests build every registered
    model without a table of their own: `{"backbone": "test_vit", "options": {...}}`, both keys
    optional (default: the tests' tiny `test_resnet` and the model's default options). A model
    added later is tested at its own tiny size the day it is registered. `"old_logits_kept":
    False` marks a model whose old classes' logits move when classes are added (csc's label graph
    mixes every class), which the growth contract then does not ask of it.
    """

    test_settings: dict = field(default_factory=dict)
    uses_image_size: bool = False  # built for data.image_size (SRN's regulariser kernel)
    capabilities: frozenset = frozenset()  # names of CAPABILITIES: what it offers plugins and strategies
    # {"strategy.name": "l3a"}: config it needs, checked like Plugin.requires (l3a's head is only
    # trained by the l3a strategy: under another it would be a linear head labelled l3a)
    requires: dict = field(default_factory=dict)


PLUGIN_KINDS = ("replay", "targets", "loss", "penalty", "")


@dataclass(frozen=True)
class Plugin(Declaration):
    """Options at `strategy.<section>` (default: the name); `build(cfg, scenario) -> CmlPlugin`."""

    # one of PLUGIN_KINDS: "replay" (a replay buffer, at most one per run: they share strategy.replay),
    # "targets" (rewrites the batch's targets), "loss" (adds a loss term), "penalty" (a term on the
    # parameters); the strategy runs its plugins by kind, then by name (`canonical_order`)
    kind: str = ""
    section: str = ""
    uses_previous_model: bool = False  # the strategy keeps the previous step's model for it
    requires: dict = field(default_factory=dict)  # {"scenario.labels": "partial"}: config it needs
    needs: frozenset = frozenset()  # names of CAPABILITIES the chosen model must have


@dataclass(frozen=True)
class Protocol(Declaration):
    """`build(cfg, data) -> list[Step]`: the steps of `scenario.protocol`."""

    requires_keys: tuple = ()  # config keys that must be set (split-files: scenario.split_dir)


@dataclass(frozen=True)
class Loss(Declaration):
    """Options at `train.<section>`; `build(options) -> criterion(logits, targets)`."""

    reduction: Literal["mean", "sum"] = "mean"  # over the images of a batch (sum: weighted under torchrun)
    section: str = ""


@dataclass(frozen=True)
class Strategy(Declaration):
    """Options at `strategy.<name>`; `build(cfg, scenario, plugins=..., **template_arguments) -> MultiLabelStrategy`."""

    needs: frozenset = frozenset()  # names of CAPABILITIES the chosen model must have


def vocabulary(declaration: Declaration, module: str) -> dict[str, frozenset]:
    """Its `capabilities` / `needs` as frozensets of CAPABILITIES' names. A name outside the
    vocabulary is refused when the registry loads: a typo would otherwise be a need that no model
    meets, or a capability that no check reads."""
    found = {}
    for attr in ("capabilities", "needs"):
        value = getattr(declaration, attr, None)
        if value is None:
            continue
        if not isinstance(value, (set, frozenset, tuple, list)) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{module}: {attr}: expected a set of capability names, got {value!r}")
        unknown = sorted(set(value) - CAPABILITIES.keys())
        if unknown:
            raise UserError(
                f"{module}: {attr}: unknown capability {unknown[0]!r}{did_you_mean(unknown[0], CAPABILITIES)}; "
                f"the vocabulary (cml.core.registry.CAPABILITIES): {', '.join(sorted(CAPABILITIES))}"
            )
        found[attr] = frozenset(value)
    return found


def _has(fact: Any, wanted: Any) -> bool:
    """Whether a fact is the one asked for; a set fact (capabilities, needs) holds the name(s) asked."""
    if isinstance(fact, frozenset) and not isinstance(wanted, (set, frozenset)):
        return wanted in fact
    if isinstance(fact, frozenset):
        return wanted <= fact
    return fact == wanted


def section_of(declaration: Declaration) -> str:
    return getattr(declaration, "section", "") or declaration.name


def declares(path: Path) -> bool:
    """Whether the module or package at PATH (no suffix) assigns `DECLARATION` at module level.

    Read from the source, not imported: a kind's package also holds the shared implementation
    (base classes, layers), which imports torch; only declaration modules are imported."""
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not source.is_file():
        return False
    tree = ast.parse(source.read_bytes(), str(source))
    return any(
        isinstance(node, (ast.Assign, ast.AnnAssign))
        and any(
            isinstance(t, ast.Name) and t.id == "DECLARATION"
            for t in getattr(node, "targets", [getattr(node, "target", None)])
        )
        for node in tree.body
    )


def configured_plugin_build(declaration: Plugin) -> Callable[..., Any]:
    """The plugin's `build`, giving the built plugin its declared name, kind and
    `uses_previous_model`: the registry's route is then the only one (a plugin built by the bare
    function had none, so the strategy kept no previous model and LwF never distilled)."""
    raw = getattr(declaration.build, "raw_build", declaration.build)

    def build(cfg, scenario):
        plugin = raw(cfg, scenario)
        plugin.name, plugin.kind = declaration.name, declaration.kind
        plugin.uses_previous_model = declaration.uses_previous_model
        return plugin

    build.raw_build = raw
    return build


class Registry:
    def __init__(self, kind: str, package: str, declares: type):
        self.kind, self.package, self.declares = kind, package, declares
        self._entries: dict[str, Declaration] = {}
        self._discovered = False

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        folder = importlib.import_module(self.package).__path__
        for info in sorted(pkgutil.iter_modules(folder), key=lambda m: m.name):
            if declares(Path(info.module_finder.path) / info.name):
                add_module(importlib.import_module(f"{self.package}.{info.name}"), self)

    def add(self, declaration: Declaration, module: str) -> Declaration:
        if not isinstance(declaration, self.declares):
            raise TypeError(f"{module}: a {self.kind} declares a {self.declares.__name__}")
        name = declaration.name or module.rsplit(".", 1)[-1]
        declaration = dataclasses.replace(declaration, name=name, module=module, **vocabulary(declaration, module))
        if isinstance(declaration, Plugin):
            declaration = dataclasses.replace(declaration, build=configured_plugin_build(declaration))
        old = self._entries.get(name)
        if old is not None and old.module != module:
            warnings.warn(
                f"{self.kind} {name!r} is declared by {old.module} and by {module}; {module} is used", stacklevel=2
            )
        self._entries[name] = declaration
        global _generation
        _generation += 1
        return declaration

    def names(self, **facts: Any) -> list[str]:
        """Sorted names, of the components whose facts equal `facts` (e.g. kind="replay"); a set
        fact holds the names asked: `MODELS.names(capabilities="task_tokens")`, or a set of them."""
        self._discover()
        return sorted(n for n, d in self._entries.items() if all(_has(getattr(d, k), v) for k, v in facts.items()))

    def declarations(self) -> list[Declaration]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> Declaration:
        self._discover()
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; known: {', '.join(self.names())}"
            )
        return self._entries[name]


DATASETS = Registry("dataset", "cml.datasets", Dataset)
MODELS = Registry("model", "cml.models", Model)
PLUGINS = Registry("plugin", "cml.plugins", Plugin)
PROTOCOLS = Registry("protocol", "cml.protocols", Protocol)
LOSSES = Registry("loss", "cml.losses", Loss)
STRATEGIES = Registry("strategy", "cml.strategies", Strategy)
REGISTRIES = (DATASETS, MODELS, PLUGINS, PROTOCOLS, LOSSES, STRATEGIES)
_generation = 0  # bumped by every add: the config schema is rebuilt when it changes


def generation() -> int:
    for registry in REGISTRIES:
        registry._discover()
    return _generation


def add_module(module, registry: Registry | None = None) -> Declaration:
    declaration = getattr(module, "DECLARATION", None)
    for candidate in REGISTRIES if registry is None else (registry,):
        if isinstance(declaration, candidate.declares):
            return candidate.add(declaration, module.__name__)
    kinds = ", ".join(r.declares.__name__ for r in REGISTRIES)
    raise UserError(
        f"{module.__name__}: expected a module-level DECLARATION, one of {kinds} "
        f"(cml.core.registry), got {type(declaration).__name__}"
    )


def import_components(modules: list[str], where: str) -> None:
    """A config's `imports:` or the command line's `--import` (WHERE, the messages' prefix): each
    module (found on sys.path / PYTHONPATH) declares one component."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as err:  # a missing module, or one that fails to import
            raise UserError(
                f"{where}: cannot import {name!r} ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}); expected a module "
                f"on PYTHONPATH that declares a cml component"
            ) from None
        if module.__name__ not in _imported:
            try:
                add_module(module)
            except UserError as err:
                raise UserError(f"{where}: {err}") from None
            _imported.add(module.__name__)


_imported: set[str] = set()
