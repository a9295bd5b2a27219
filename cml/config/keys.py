"""The core config keys as typed dataclasses, and the schema that adds every registered
component's option section. Every key has a type, a default and (where it matters) a range or a
set of choices; loading and checking are in `cml.config.loading` and `cml.config.checks`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from cml.core import registry
from cml.core.registry import DATASETS, LOSSES, PLUGINS, section_of
from cml.core.schema import SEED_MAX, option


@dataclass
class DataConfig:
    dataset: str = option("synthetic", help="a registered dataset")
    root: Optional[str] = option(None, help="dataset folder (synthetic: cache folder, made if absent)")
    image_size: int = option(224, low=8, high=2048, help="square input size of the model")
    geometry: Literal["squash", "keep_aspect"] = option(
        "squash",
        help="squash: each image resized to image_size square, aspect not kept (KRT, CSC, PRS, L3A); "
        "keep_aspect: training crops (train.crop_scale) from the original image, test images resized on "
        "the shorter side to data.test_resize (bicubic) and centre-cropped (MULTI-LANE, DeiT)",
    )
    jpeg_draft: bool = option(
        False,
        help="squash: decode JPEGs at a reduced scale (PIL's draft mode, 1/2 to 1/8 while still at least "
        "image_size) before the resize: faster from the files, but not the full decode of the authors' "
        "loaders (the demo configs; every cml run before 2026-12-03)",
    )
    test_resize: Optional[int] = option(
        None,
        low=8,
        high=4096,
        help="keep_aspect: the test images' shorter side before the centre crop; "
        "null: int(256 / 224 x image_size), 256 at 224 (MULTI-LANE, DeiT)",
    )
    num_workers: Union[Literal["auto"], int] = option(
        "auto",
        low=0,
        high=64,
        help="DataLoader worker processes; auto: 0 on the CPU, on CUDA this process's "
        "share of the cores less one, at most 8 (docs/scaling.md)",
    )
    prefetch_factor: int = option(
        2,
        low=1,
        high=64,
        help="batches each DataLoader worker loads ahead (with num_workers > 0; workers persist across epochs)",
    )
    cache: bool = option(False, help="decode and resize images once into a memory-mapped cache")
    cache_dir: Optional[str] = option(None, help="where the image cache lives (default ROOT/.cml-cache)")
    bad_images: Literal["skip", "stop"] = option(
        "skip",
        help="unreadable images found by the check before training: leave them out (counted "
        "in results' skipped) or stop with their list",
    )
    # data.<dataset>: each dataset's declared options (`config_class`)


@dataclass
class ScenarioConfig:
    protocol: str = option("class-incremental", help="a registered protocol: how classes become steps")
    base: int = option(0, low=0, help="classes in the first step; 0 = equal steps of `increment`")
    increment: int = option(10, low=1, help="classes per step after the first")
    order: Union[str, list[str]] = option(
        "alphabetical", help="alphabetical | shuffle | an explicit list of class names"
    )
    labels: Literal["partial", "full", "all"] = option(
        "partial",
        help="partial: only the current step's labels; full: all seen classes; "
        "all: every class, seen or not (PRS's multi-hot over the whole map)",
    )
    split_dir: Optional[str] = option(None, help="split-files: folder of PRS task id lists")
    task_order: list[int] = option([], help="split-files: order of the tasks (default 0..K-1)")


@dataclass
class ModelConfig:
    name: str = option("linear", help="a registered model (docs/models.md)")
    backbone: str = option("resnet18", help="any timm model name")
    pretrained: Union[bool, str] = option(False, help="false | true (timm weights) | path to a checkpoint")
    options: dict = option(
        {}, help="the model's declared options (model.options.* below), e.g. {embed_dim: 256, blocks: 2} for dlfl"
    )
    outputs: Literal["seen", "all"] = option(
        "seen", help="head size: the classes seen so far, or every class from the first step (PRS)"
    )


@dataclass
class StrategyConfig:
    name: str = option("finetune", help="a registered strategy")
    plugins: list[str] = option([], help="continual-learning plugins, combined in this order")
    feature_cache: bool = option(True, help="l3a, probe: compute each image's frozen-backbone feature once per run")
    # strategy.<section>: each plugin's and strategy's declared options (`config_class`)


@dataclass
class TrainConfig:
    epochs: int = option(1, low=1, help="epochs per step")
    batch_size: int = option(32, low=1)
    lr: float = option(1e-3, positive=True, help="learning rate (the peak of onecycle)")
    first_step_lr: Optional[float] = option(
        None, positive=True, help="learning rate of the first step (KRT on COCO: 4e-5); null = train.lr"
    )
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    optimizer_scope: Literal["step", "stream"] = option(
        "step",
        help="step: a new optimizer every step (KRT); stream: one for the whole stream, its state "
        "carried over (PRS's code)",
    )
    weight_decay: float = option(0.0, low=0)
    decay_1d: bool = option(
        True, help="weight decay on biases and other 1-d parameters too (KRT / ASL: false, weights only)"
    )
    momentum: float = option(0.9, low=0, high=1)
    scheduler: Literal["none", "cosine", "cosine_epoch", "onecycle"] = option(
        "none",
        help="lr schedule over each step: cosine and onecycle per iteration; cosine_epoch: "
        "cosine over the epochs, held through each (MULTI-LANE's)",
    )
    loss: str = option("bce", help="a registered loss; train.<loss>: its options")
    hflip: bool = option(True, help="random horizontal flips while training")
    crop_scale: Optional[float] = option(
        None,
        positive=True,
        high=1,
        help="random resized crop covering this fraction of the area up to all of it, aspect 3/4 to 4/3; null = off",
    )
    cutout: float = option(
        0.0,
        low=0,
        high=1,
        help="Cutout as ASL / KRT (CutoutPIL): a rectangle of this "
        "fraction of each side in a random colour (KRT: 0.5); 0 = off",
    )
    randaugment: bool = option(False, help="RandAugment after Cutout, as KRT / CSC; which: train.randaugment_variant")
    randaugment_variant: Literal["uda", "torchvision"] = option(
        "uda",
        help="uda: the randaugment package's, as KRT / CSC / ASL (2 of 15 operations, each with probability 0.5, "
        "level 1-9 of 10); torchvision: v2.RandAugment (2 of 14 always, magnitude 9 of 31; cml before issue 26)",
    )
    clip_grad_value: Optional[float] = option(
        None, positive=True, help="clip each gradient to [-v, v] before the step (PRS: 5); null = off"
    )
    online: bool = option(
        False,
        help="one pass over each step in a random order, the last incomplete "
        "batch dropped (PRS online setting); overrides epochs",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = option("none", help="mixed precision on CUDA")
    channels_last: bool = option(False, help="channels_last memory format on CUDA")
    nonfinite: Literal["stop", "skip"] = option(
        "stop", help="a NaN/inf loss: stop the run (exit 3), or skip the batch (counted in results)"
    )
    compile: bool = option(
        False, help="torch.compile the training model; where it cannot compile, one warning and eager mode"
    )
    augment_on_device: bool = option(
        False,
        help="augment (crop, flip, cutout, RandAugment) uint8 batches on the training device instead of in the loader",
    )
    sync_batchnorm: bool = option(
        True,
        help="under torchrun on CUDA: BatchNorm statistics over the global "
        "batch (SyncBatchNorm), as in one process (docs/scaling.md)",
    )
    deterministic: bool = option(
        False,
        help="torch's deterministic algorithms, cuDNN without autotuning: the same "
        "seed gives the same numbers on CUDA too, slower (docs/performance.md)",
    )


@dataclass
class GroupsConfig:
    majority: Optional[str] = option(None, help="per_task: JSON list of majority class names (PRS: major_cats*.json)")
    moderate: Optional[str] = option(
        None, help="per_task: JSON list of moderate class names (PRS: moderate_cats*.json)"
    )
    minority: Optional[str] = option(None, help="per_task: JSON list of minority class names (PRS: minor_cats*.json)")
    thresholds: list[float] = option(
        [0.1, 0.7],
        help="without files: training count / largest count below the first is minority, from the second majority",
    )


@dataclass
class EvalConfig:
    threshold: float = option(0.5, low=0, high=1, help="score threshold of CP/CR/CF1/OP/OR/OF1")
    strict: bool = option(False, help="a prediction is score > threshold (KRT's and PRS's code), not >=")
    batch_size: int = option(64, low=1)
    per_task: bool = option(
        False,
        help="also score each task's test set on its present classes, with PRS's relative forgetting and class groups",
    )
    groups: GroupsConfig = field(default_factory=GroupsConfig)


LOGGERS = ("tensorboard", "csv", "wandb", "interactive")  # log.loggers (cml.evaluation.loggers)
LOG_METRICS = ("timing", "ram", "gpu")  # log.metrics: Avalanche's metrics


@dataclass
class WandbConfig:
    project: str = option("cml", help="the W&B project")
    entity: Optional[str] = option(None, help="the W&B team or user (default: the account's)")
    mode: Literal["offline", "online"] = option(
        "offline",
        help="offline: files under RUN_DIR/wandb only, no network (upload with `wandb sync`); online: to the server",
    )


@dataclass
class LogConfig:
    every_s: float = option(
        60.0,
        positive=True,
        help="off a terminal (a log file): a progress line at most this often (seconds), and at the end of each epoch",
    )
    loggers: list[str] = option(
        ["tensorboard"],
        help="any of tensorboard (RUN_DIR/tb), csv (RUN_DIR/csv), wandb (log.wandb), interactive (Avalanche's "
        "printout); cml's progress line is always on (docs/metrics.md)",
    )
    metrics: list[str] = option(
        [], help="Avalanche metrics to add: timing (epoch, eval) | ram (peak, process) | gpu (utilisation, CUDA only)"
    )
    wandb: WandbConfig = field(default_factory=WandbConfig)
    save_models: Literal["last", "every", "none"] = option(
        "last",
        help="model.pt (weights, class order, head sizes, config; `cml eval`): the last step's, also "
        "model_step<K>.pt for every step K, or none (checkpoint.pt keeps the last step's weights)",
    )


@dataclass
class Config:
    imports: list[str] = option(
        [],
        help="modules (on PYTHONPATH, not the working directory) that declare more components; imported, "
        "so run, before the rest is checked: a config with imports is code, run only configs you trust",
    )
    seed: int = option(0, low=0, high=SEED_MAX, help="one seed for data order, initialisation and augmentation")
    data: DataConfig = field(default_factory=DataConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# --------------------------------------------------------------------------- the registries' sections


def _with_sections(base: type, sections: dict[str, type]) -> type:
    """`base` plus one field per declared option section (`section: Options = Options()`)."""
    fields = [(name, cls, field(default_factory=cls)) for name, cls in sections.items()]
    return dataclasses.make_dataclass(base.__name__, fields, bases=(base,))


def _sections(reg: registry.Registry) -> dict[str, type]:
    return {section_of(d): d.options for d in reg.declarations() if d.options is not None}


_schema: tuple[int, type] | None = None


def config_class() -> type:
    """The config schema: the core keys above plus every registered component's option section
    (data.<dataset>, strategy.<plugin section>, train.<loss section>); rebuilt when a module of
    `imports:` adds components."""
    global _schema
    generation = registry.generation()
    if _schema is None or _schema[0] != generation:
        parts = {
            "data": _with_sections(DataConfig, _sections(DATASETS)),
            "strategy": _with_sections(StrategyConfig, {**_sections(PLUGINS), **_sections(registry.STRATEGIES)}),
            "train": _with_sections(TrainConfig, _sections(LOSSES)),
        }
        _schema = (
            generation,
            dataclasses.make_dataclass(
                "Config", [(k, cls, field(default_factory=cls)) for k, cls in parts.items()], bases=(Config,)
            ),
        )
    return _schema[1]
