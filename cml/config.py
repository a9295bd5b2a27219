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
from typing import Any, Literal, Optional, Union

from cml import safeyaml
from cml.errors import UserError
from cml.config_checks import check_semantics
from cml.config_sections import (SEED_MAX, CocoConfig, ListConfig, NusWideConfig, SyntheticConfig,  # noqa: F401
                                 VocConfig, _opt)
from cml.safeyaml import check_values, key_name, show


@dataclass
class DataConfig:
    dataset: str = _opt("synthetic", help="coco | nuswide | voc | list | synthetic")
    root: Optional[str] = _opt(None, help="dataset folder (synthetic: cache folder, made if absent)")
    image_size: int = _opt(224, low=8, high=2048, help="square input size of the model")
    num_workers: int = _opt(0, low=0, high=64, help="DataLoader worker processes")
    prefetch_factor: int = _opt(2, low=1, high=64, help="batches each DataLoader worker loads ahead "
                                                        "(with num_workers > 0; workers persist across epochs)")
    cache: bool = _opt(False, help="decode and resize images once into a memory-mapped cache")
    cache_dir: Optional[str] = _opt(None, help="where the image cache lives (default ROOT/.cml-cache)")
    bad_images: Literal["skip", "stop"] = _opt(
        "skip", help="unreadable images found by the check before training: leave them out (counted "
                     "in results' skipped) or stop with their list")
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
    labels: Literal["partial", "full", "all"] = _opt(
        "partial", help="partial: only the current step's labels; full: all seen classes; "
                        "all: every class, seen or not (PRS's multi-hot over the whole map)")
    split_dir: Optional[str] = _opt(None, help="split-files: folder of PRS task id lists")
    task_order: list[int] = _opt([], help="split-files: order of the tasks (default 0..K-1)")


@dataclass
class ModelConfig:
    name: str = _opt("linear", help="registered cml model: linear | dlfl | srn | dr (docs/models.md)")
    backbone: str = _opt("resnet18", help="any timm model name")
    pretrained: Union[bool, str] = _opt(False, help="false | true (timm weights) | path to a checkpoint")
    options: dict = _opt({}, help="model-specific keyword arguments, e.g. {embed_dim: 256, blocks: 2} "
                                  "for dlfl (docs/models.md)")
    outputs: Literal["seen", "all"] = _opt(
        "seen", help="head size: the classes seen so far, or every class from the first step (PRS)")


@dataclass
class ReplayConfig:
    size: int = _opt(2000, low=1, help="prs, ocdm, reservoir: buffer size in images (PRS: 2,000)")
    batch_ratio: float = _opt(1.0, low=0, high=64, help="mix batch: replay images drawn per incoming image (PRS: 1)")
    rho: float = _opt(-0.03, low=-1, high=1, help="prs, ocdm: target share of class i ~ n_i^rho "
                                                    "(PRS: -0.03 COCOseq, 0.02 NUS-WIDEseq)")
    per_class: int = _opt(20, low=1, help="herding: exemplars per class (KRT: 20 COCO, 2 VOC)")
    relabel: bool = _opt(False, help="stored images' targets widen to the classes up to the current step "
                                     "that they hold (KRT)")
    mix: Literal["batch", "concat"] = _opt(
        "batch", help="batch: a replay batch joins each incoming batch; concat: the stored images "
                      "join the step's training set (KRT)")
    herding_repeats: Literal["never", "per_class"] = _opt(
        "never", help="herding: never: an image is stored once across all steps (KRT on COCO); per_class: "
                      "once per class it is chosen for (KRT on VOC)")


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
                                                    "old class becomes a positive target (dynamic: the first "
                                                    "step's starting threshold, KRT 0.8)")
    dynamic: bool = _opt(False, help="pseudo: KRT's calibration: at the start of each step the threshold moves "
                                     "by 0.005 until the previous model gives `target` x n_old / n_classes "
                                     "old labels per training image (within 0.1); strictly above it")
    target: float = _opt(2.9, positive=True, help="pseudo dynamic: old-class labels per image if every class "
                                                  "were old (KRT: 2.9 COCO, 1.4 VOC)")


@dataclass
class TdlConfig:
    weight: float = _opt(1.5625, low=0, help="tdl: lambda of KRT's token distillation, a per-image ratio to the "
                                             "classification loss (KRT's 100 over 64 images per GPU on COCO B0; "
                                             "300/64 B40, 80/64 VOC)")


@dataclass
class PodConfig:
    spatial_weight: float = _opt(0.078125, low=0, help="pod: weight of the spatial term, per image (KRT's POD "
                                                      "baseline: 5 over 64 images per GPU)")
    flat_weight: float = _opt(2.8125, low=0, help="pod: weight of the pooled-embedding term, per image (KRT's "
                                                  "POD baseline: 180 over 64 images per GPU)")
    stages: list[int] = _opt([1, 2, 3], help="pod: backbone stages distilled spatially; stage k has stride "
                                             "2^(k+1) (KRT: 1-3, TResNet-M's layer1-3)")


@dataclass
class StrategyConfig:
    name: str = _opt("finetune", help="finetune | joint")
    plugins: list[str] = _opt([], help="continual-learning plugins, combined in this order")
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    lwf: LwfConfig = field(default_factory=LwfConfig)
    ewc: EwcConfig = field(default_factory=EwcConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    tdl: TdlConfig = field(default_factory=TdlConfig)
    pod: PodConfig = field(default_factory=PodConfig)


@dataclass
class AslConfig:
    gamma_neg: float = _opt(4.0, low=0)
    gamma_pos: float = _opt(0.0, low=0)
    clip: float = _opt(0.05, low=0, high=1, help="probability margin shifted off easy negatives")
    focal_grad: bool = _opt(False, help="differentiate the focal weight (1 - p_t)^gamma too; false: detached, "
                                        "as the ASL project's default and KRT")


@dataclass
class TrainConfig:
    epochs: int = _opt(1, low=1, help="epochs per step")
    batch_size: int = _opt(32, low=1)
    lr: float = _opt(1e-3, positive=True, help="learning rate (the peak of onecycle)")
    first_step_lr: Optional[float] = _opt(None, positive=True, help="learning rate of the first step "
                                                                  "(KRT on COCO: 4e-5); null = train.lr")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    optimizer_scope: Literal["step", "stream"] = _opt(
        "step", help="step: a new optimizer every step (KRT); stream: one for the whole stream, its state "
                     "carried over (PRS's code)")
    weight_decay: float = _opt(0.0, low=0)
    decay_1d: bool = _opt(True, help="weight decay on biases and other 1-d parameters too "
                                     "(KRT / ASL: false, weights only)")
    momentum: float = _opt(0.9, low=0, high=1)
    scheduler: Literal["none", "cosine", "onecycle"] = _opt("none", help="per-iteration schedule over each step")
    loss: Literal["bce", "asl", "multilabel_soft_margin"] = _opt(
        "bce", help="bce: mean BCE-with-logits; asl: asymmetric loss (Ridnik et al.); "
                    "multilabel_soft_margin: torch's MultiLabelSoftMarginLoss (PRS)")
    asl: AslConfig = field(default_factory=AslConfig)
    hflip: bool = _opt(True, help="random horizontal flips while training")
    crop_scale: Optional[float] = _opt(None, positive=True, high=1, help="random resized crop covering this "
                                       "fraction of the area up to all of it, aspect 3/4 to 4/3; null = off")
    cutout: float = _opt(0.0, low=0, high=1, help="Cutout as ASL / KRT (CutoutPIL): a rectangle of this "
                                                  "fraction of each side in a random colour (KRT: 0.5); 0 = off")
    randaugment: bool = _opt(False, help="torchvision's RandAugment (2 operations, magnitude 9), as KRT")
    clip_grad_value: Optional[float] = _opt(None, positive=True, help="clip each gradient to [-v, v] "
                                                                    "before the step (PRS: 5); null = off")
    online: bool = _opt(False, help="one pass over each step in a random order, the last incomplete "
                                    "batch dropped (PRS online setting); overrides epochs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = _opt("none", help="mixed precision on CUDA")
    channels_last: bool = _opt(False, help="channels_last memory format on CUDA")
    nonfinite: Literal["stop", "skip"] = _opt(
        "stop", help="a NaN/inf loss: stop the run (exit 3), or skip the batch (counted in results)")
    compile: bool = _opt(False, help="torch.compile the training model; where it cannot compile, one warning "
                                     "and eager mode")
    augment_on_device: bool = _opt(False, help="augment (crop, flip, cutout, RandAugment) uint8 batches on "
                                               "the training device instead of in the loader")
    sync_batchnorm: bool = _opt(True, help="under torchrun on CUDA: BatchNorm statistics over the global "
                                          "batch (SyncBatchNorm), as in one process (docs/scaling.md)")


@dataclass
class GroupsConfig:
    majority: Optional[str] = _opt(None, help="per_task: JSON list of majority class names (PRS: major_cats*.json)")
    moderate: Optional[str] = _opt(None, help="per_task: JSON list of moderate class names (PRS: moderate_cats*.json)")
    minority: Optional[str] = _opt(None, help="per_task: JSON list of minority class names (PRS: minor_cats*.json)")
    thresholds: list[float] = _opt([0.1, 0.7], help="without files: training count / largest count "
                                                    "below the first is minority, from the second majority")


@dataclass
class EvalConfig:
    threshold: float = _opt(0.5, low=0, high=1, help="score threshold of CP/CR/CF1/OP/OR/OF1")
    strict: bool = _opt(False, help="a prediction is score > threshold (KRT's and PRS's code), not >=")
    batch_size: int = _opt(64, low=1)
    per_task: bool = _opt(False, help="also score each task's test set on its present classes, with "
                                      "PRS's relative forgetting and class groups")
    groups: GroupsConfig = field(default_factory=GroupsConfig)


@dataclass
class Config:
    seed: int = _opt(0, low=0, high=SEED_MAX, help="one seed for data order, initialisation and augmentation")
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


def yaml11_float(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {prefix[:-1] or 'the config'}: expected a mapping of keys, got {show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key_name(key)}"
        if key not in fields:
            close = difflib.get_close_matches(str(key)[:100], list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise UserError(f"{source}: unknown key '{dotted}'{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            values[key] = _build(tp, value, dotted + ".", source)
            continue
        takes_float = tp is float or float in typing.get_args(tp)
        if takes_float and isinstance(value, str):
            value = yaml11_float(value)  # YAML reads 1e-4 (no dot) as a string
        if not _matches(value, tp):
            raise UserError(f"{source}: {dotted}: expected {_type_name(tp)}, got {show(value)}")
        check_values(value, dotted, source)
        meta = fields[key].metadata
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = meta.get("low"), meta.get("high")
            if (low is not None and value < low) or (high is not None and value > high) or (
                    meta.get("positive") and value <= 0):
                bound = ("> 0" if meta.get("positive") else
                         f"in [{low}, {high}]" if low is not None and high is not None else
                         f">= {low}" if low is not None else f"<= {high}")
                raise UserError(f"{source}: {dotted}: expected a value {bound}, got {show(value)}")
        if takes_float and isinstance(value, int) and not isinstance(value, bool):
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
    shown = show(text)
    if "=" not in text:
        raise UserError(f"--set {shown}: expected key.sub=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or key.count(".") >= safeyaml.MAX_DEPTH or not key.isprintable():
        raise UserError(f"--set {shown}: expected key.sub=value with a dotted config key")
    return key, safeyaml.load(value, f"--set {shown}")


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> Config:
    raw: Any = {}
    source = str(path) if path else "config"
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = fh.read(safeyaml.MAX_BYTES + 1)
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except OSError as err:
            raise UserError(f"{path}: cannot read the config ({err.strerror})") from None
        raw = safeyaml.load(data, source)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise UserError(f"{source}: expected a mapping of config keys (like 'train:'), got {show(raw)}")
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(raw, key, value)
    if overrides:
        source += " (with --set)"
    check_values(raw, "", source)
    config = _build(Config, raw, "", source)
    check_semantics(config, source)
    return config


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
