"""Typed experiment config: YAML in, validated dataclasses out, before anything heavy is imported.

Every key has a type, a default and (where it matters) a range or a set of choices. Errors name
the file and the dotted key, say what was expected, and suggest the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from cml.errors import UserError


def _opt(default: Any = dataclasses.MISSING, *, low: float | None = None, high: float | None = None,
         positive: bool = False, help: str = "", **kw: Any) -> Any:
    meta = {"low": low, "high": high, "positive": positive, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta, **kw)


@dataclass
class SyntheticConfig:
    num_classes: int = _opt(24, low=4, high=24, help="how many of the 24 named classes to use")
    train_images: int = _opt(1500, low=8)
    test_images: int = _opt(500, low=8)
    image_size: int = _opt(64, low=16, high=512, help="size of the generated images on disk")
    seed: int = _opt(0, help="the dataset's own seed, independent of the run's seed")


@dataclass
class CocoConfig:
    crowd: Literal["ignore", "positive"] = _opt(
        "ignore", help="iscrowd=1 annotations: not a label (KRT loader) or a label")


@dataclass
class VocConfig:
    difficult: Literal["negative", "positive", "ignore"] = _opt(
        "negative", help="label 0 (difficult): not a label, a label, or left out of that class's AP")


@dataclass
class NusWideConfig:
    images: Optional[str] = _opt(None, help="image folder (default ROOT/images); list paths are relative to it")


@dataclass
class ListConfig:
    train: Optional[str] = _opt(None, help="CSV or JSONL of path,labels for training")
    test: Optional[str] = _opt(None, help="CSV or JSONL of path,labels for testing")
    classes: Optional[str] = _opt(None, help="text file, one class name per line")


@dataclass
class DataConfig:
    dataset: str = _opt("synthetic", help="coco | nuswide | voc | list | synthetic")
    root: Optional[str] = _opt(None, help="dataset folder (synthetic: cache folder, made if absent)")
    image_size: int = _opt(224, low=8, high=2048, help="square input size of the model")
    num_workers: int = _opt(0, low=0, high=64, help="DataLoader worker processes")
    cache: bool = _opt(False, help="decode and resize images once into a memory-mapped cache")
    cache_dir: Optional[str] = _opt(None, help="where the image cache lives (default ROOT/.cml-cache)")
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    coco: CocoConfig = field(default_factory=CocoConfig)
    voc: VocConfig = field(default_factory=VocConfig)
    nuswide: NusWideConfig = field(default_factory=NusWideConfig)
    list: ListConfig = field(default_factory=ListConfig)


@dataclass
class ScenarioConfig:
    protocol: Literal["class-incremental", "static", "split-files"] = _opt(
        "class-incremental", help="B-C steps; one step of all classes; PRS split files")
    base: int = _opt(0, low=0, help="classes in the first step; 0 = equal steps of `increment`")
    increment: int = _opt(10, low=1, help="classes per step after the first")
    order: Union[str, list[str]] = _opt(
        "alphabetical", help="alphabetical | shuffle | an explicit list of class names")
    labels: Literal["partial", "full"] = _opt(
        "partial", help="partial: only the current step's labels; full: all seen classes")
    split_dir: Optional[str] = _opt(None, help="split-files: folder of PRS task id lists")
    task_order: list[int] = _opt([], help="split-files: order of the tasks (default 0..K-1)")


@dataclass
class ModelConfig:
    name: str = _opt("linear", help="registered cml model: linear")
    backbone: str = _opt("resnet18", help="any timm model name")
    pretrained: Union[bool, str] = _opt(False, help="false | true (timm weights) | path to a checkpoint")
    options: dict = _opt({}, help="model-specific keyword arguments")


@dataclass
class ReplayConfig:
    size: int = _opt(2000, low=1, help="prs, ocdm, reservoir: buffer size in images")
    batch_ratio: float = _opt(1.0, low=0, help="replay images drawn per incoming image of a batch (PRS: 1)")
    rho: float = _opt(-0.03, low=-1, high=1, help="prs, ocdm: target share of class i ~ n_i^rho "
                                                    "(PRS: -0.03 COCOseq, 0.02 NUS-WIDEseq)")
    per_class: int = _opt(20, low=1, help="herding: exemplars per class (KRT: 20 COCO, 2 VOC)")
    relabel: bool = _opt(False, help="herding: stored exemplars gain the labels of later classes they hold (KRT)")
    mix: Literal["batch", "concat"] = _opt(
        "batch", help="batch: a replay batch joins each incoming batch; concat: the stored images "
                      "join the step's training set (KRT)")


@dataclass
class LwfConfig:
    weight: float = _opt(1.0, low=0, help="lwf: weight of the distillation loss on the old classes' logits")
    temperature: float = _opt(2.0, positive=True, help="lwf: temperature T of the old and new sigmoids (loss scaled by T^2)")
    feature_weight: float = _opt(0.0, low=0, help="lwf: weight of distilling the old classes' per-label "
                                                 "features (models that emit label_features)")


@dataclass
class EwcConfig:
    weight: float = _opt(1000.0, low=0, help="ewc: lambda, the penalty is lambda/2 * sum F (theta - theta*)^2")
    mode: Literal["separate", "online"] = _opt(
        "separate", help="ewc: one penalty per past step, or one decayed sum of Fishers anchored at the last step")
    decay: float = _opt(0.9, low=0, high=1, help="ewc online: gamma, F = gamma * F_previous + F_step")


@dataclass
class PseudoConfig:
    threshold: float = _opt(0.7, low=0, high=1, help="pseudo: the previous model's sigmoid at or above which an "
                                                    "old class becomes a positive target")


@dataclass
class StrategyConfig:
    name: str = _opt("finetune", help="finetune | joint")
    plugins: list[str] = _opt([], help="continual-learning plugins, combined in this order")
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    lwf: LwfConfig = field(default_factory=LwfConfig)
    ewc: EwcConfig = field(default_factory=EwcConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)


@dataclass
class AslConfig:
    gamma_neg: float = _opt(4.0, low=0)
    gamma_pos: float = _opt(0.0, low=0)
    clip: float = _opt(0.05, low=0, high=1, help="probability margin shifted off easy negatives")


@dataclass
class TrainConfig:
    epochs: int = _opt(1, low=1, help="epochs per step")
    batch_size: int = _opt(32, low=1)
    lr: float = _opt(1e-3, positive=True, help="learning rate (the peak of onecycle)")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = _opt(0.0, low=0)
    momentum: float = _opt(0.9, low=0, high=1)
    scheduler: Literal["none", "cosine", "onecycle"] = _opt("none", help="per-iteration schedule over each step")
    loss: Literal["bce", "asl"] = _opt("bce", help="bce: mean BCE-with-logits; asl: asymmetric loss (Ridnik et al.)")
    asl: AslConfig = field(default_factory=AslConfig)
    hflip: bool = _opt(True, help="random horizontal flips while training")
    online: bool = _opt(False, help="one pass over each step (PRS online setting); overrides epochs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = _opt("none", help="mixed precision on CUDA")
    channels_last: bool = _opt(False, help="channels_last memory format on CUDA")


@dataclass
class EvalConfig:
    threshold: float = _opt(0.5, low=0, high=1, help="score threshold of CP/CR/CF1/OP/OR/OF1")
    batch_size: int = _opt(64, low=1)


@dataclass
class Config:
    seed: int = _opt(0, help="one seed for data order, initialisation and augmentation")
    data: DataConfig = field(default_factory=DataConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        inner = _type_name(typing.get_args(tp)[0])
        return "a list of " + {"an integer": "integers", "a string": "strings"}.get(inner, inner)
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            dict: "a mapping", type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    return isinstance(value, tp)


def _yaml11_float(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {prefix or 'the config'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise UserError(f"{source}: unknown key '{dotted}'{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            values[key] = _build(tp, value, dotted + ".", source)
            continue
        if tp is float and isinstance(value, str):
            value = _yaml11_float(value)  # YAML reads 1e-4 (no dot) as a string
        if not _matches(value, tp):
            raise UserError(f"{source}: {dotted}: expected {_type_name(tp)}, got {value!r}")
        meta = fields[key].metadata
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = meta.get("low"), meta.get("high")
            if (low is not None and value < low) or (high is not None and value > high) or (
                    meta.get("positive") and value <= 0):
                bound = ("> 0" if meta.get("positive") else
                         f"in [{low}, {high}]" if low is not None and high is not None else
                         f">= {low}" if low is not None else f"<= {high}")
                raise UserError(f"{source}: {dotted}: expected a value {bound}, got {value!r}")
        if tp is float and isinstance(value, int):
            value = float(value)
        values[key] = value
    return cls(**values)


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key.sub=value`, the value read as YAML (so `[a, b]` is a list and `3` an int)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key.sub=value")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise UserError(f"--set {text!r}: the value is not valid YAML ({err.problem})") from None


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> Config:
    raw: dict = {}
    source = str(path) if path else "config"
    if path is not None:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except OSError as err:
            raise UserError(f"{path}: cannot read the config ({err.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}:{where} not valid YAML ({getattr(err, 'problem', err)})") from None
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(raw, key, value)
    if overrides:
        source += " (with --set)"
    config = _build(Config, raw, "", source)
    _check_semantics(config, source)
    return config


def _check_semantics(config: Config, source: str) -> None:
    from cml.datasets import DATASETS
    from cml.models import MODELS
    from cml.strategies import PLUGINS, STRATEGIES

    for key, value, registry in (("data.dataset", config.data.dataset, DATASETS),
                                 ("model.name", config.model.name, MODELS),
                                 ("strategy.name", config.strategy.name, STRATEGIES)):
        if value not in registry.names():
            raise UserError(f"{source}: {key}: unknown {registry.kind} {value!r}; "
                            f"expected one of {', '.join(registry.names())}")
    for plugin in config.strategy.plugins:
        if plugin not in PLUGINS.names():
            known = ", ".join(PLUGINS.names()) or "none yet"
            raise UserError(f"{source}: strategy.plugins: unknown plugin {plugin!r}; known: {known}")
        if config.strategy.plugins.count(plugin) > 1:
            raise UserError(f"{source}: strategy.plugins: {plugin!r} is listed twice; expected each plugin once")
    pretrained = config.model.pretrained
    if isinstance(pretrained, str) and not Path(pretrained).expanduser().is_file():
        raise UserError(f"{source}: model.pretrained: file not found: {pretrained}")
    s = config.scenario
    if isinstance(s.order, str) and s.order not in ("alphabetical", "shuffle"):
        raise UserError(f"{source}: scenario.order: expected 'alphabetical', 'shuffle' or a list "
                        f"of class names, got {s.order!r}")
    if s.protocol == "split-files" and not s.split_dir:
        raise UserError(f"{source}: scenario.split_dir: required when scenario.protocol is split-files")
    if s.split_dir and not Path(s.split_dir).expanduser().is_dir():
        raise UserError(f"{source}: scenario.split_dir: folder not found: {s.split_dir}")
    if config.data.dataset in ("coco", "nuswide", "voc") and not config.data.root:
        raise UserError(f"{source}: data.root: required for data.dataset {config.data.dataset!r}")


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def _range(meta) -> str:
    low, high = meta.get("low"), meta.get("high")
    if meta.get("positive"):
        return " > 0"
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    return f" >= {low}" if low is not None else ""


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows for `python -m cml keys` and docs/config.md."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((prefix + f.name, _type_name(tp) + _range(f.metadata), repr(default),
                     f.metadata.get("help", "")))
    return rows


def markdown_reference() -> str:
    lines = ["# Config reference", "",
             "Generated by `python -m cml keys --markdown`. Unknown keys, wrong types and out-of-range",
             "values are refused with the key named (exit code 2). Numbers such as `1e-4` may be written",
             "without a dot (plain YAML would read them as strings).", "",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, type_name, default, help_text in describe():
        cells = (f"`{key}`", type_name, f"`{default}`", help_text)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"
