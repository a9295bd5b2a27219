"""Config + loaded data -> the steps of the protocol: classes, images and targets of each step.

Plain numpy, no torch and no Avalanche: `python -m cml plan` and the scenario builder share it, so
what `plan` prints is what a run trains and tests on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cml.config import Config
from cml.core.errors import UserError
from cml.core.registry import PLUGINS, PROTOCOLS
from cml.datasets._types import MultiLabelData
from cml.protocols.groups import class_groups
from cml.protocols.split import Step


@dataclass
class StepPlan:
    data: MultiLabelData  # columns in class order
    steps: list[Step]
    class_groups: dict[str, list[int]] | None = None  # eval.per_task: majority / moderate / minority
    groups_source: str | None = None


def batch_count(n: int, batch_size: int, drop_incomplete: bool, world: int = 1) -> int:
    """The global batches a step of `n` training images yields (`cml.strategies._batches`): the
    last incomplete one is dropped in online mode, or when a rank's slice of it would hold fewer
    than 2 images (BatchNorm cannot train on one)."""
    full, rest = divmod(n, batch_size)
    return full + int(rest > 0 and not drop_incomplete and rest >= 2 * world)


def _untrainable(cfg: Config, n: int) -> str | None:
    """Why a step of `n` training images would train on nothing, or None."""
    if batch_count(n, cfg.train.batch_size, cfg.train.online):
        return None
    if cfg.train.online:
        return (
            f"fewer than train.batch_size {cfg.train.batch_size}; online mode (train.online) drops the last "
            f"incomplete batch, so it would train on nothing; set train.batch_size to at most {n}"
        )
    return "a training batch needs at least 2 images (BatchNorm)"


def untrainable_step(cfg: Config, steps: list[Step], class_names: list[str]) -> str | None:
    """The first step whose own images make no training batch, said in one line, or None: a run
    refuses it before training (`cml.commands.run`), `plan` warns (a protocol can be inspected at any size)."""
    for t, step in enumerate(steps):
        why = _untrainable(cfg, len(step.train_rows))
        if why:
            names = ", ".join(class_names[c] for c in step.classes)
            return (
                f"scenario: step {t} ({names}) has {len(step.train_rows)} training "
                f"image{'s' if len(step.train_rows) > 1 else ''}: {why}"
            )
    return None


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on Linux or macOS
        return 1 << 40


def _check_replay_size(cfg: Config, n_classes: int, stream: int) -> None:
    """A replay buffer allocates its slots up front (`ReplayBuffer`: row, targets, held, first class);
    an absurd `strategy.replay.size` must be a message, not a MemoryError at the first step."""
    if not any(PLUGINS.get(p).kind == "replay" for p in cfg.strategy.plugins):
        return
    size = cfg.strategy.replay.size
    need = size * (16 + 5 * n_classes)  # int64 row and first class, float32 target and bool held per class
    if need > memory_bytes() // 2:
        raise UserError(
            f"strategy.replay.size: {size:,} slots for {n_classes} classes need {need / 2**30:,.1f} GiB, "
            f"more than half this machine's memory; a buffer never holds more than the {stream:,} "
            f"training images of the stream: set it to at most {stream:,}"
        )


def train_counts(steps: list[Step]) -> np.ndarray:
    """Per class: the training images whose targets hold it, in the step that teaches it."""
    counts = np.zeros(steps[-1].n_seen, dtype=np.int64)
    for step in steps:
        counts[step.classes] = (step.train_targets[:, step.classes] == 1).sum(0)
    return counts


def plan_steps(cfg: Config, data: MultiLabelData) -> StepPlan:
    s = cfg.scenario
    dataset_classes = list(data.class_names)
    data, steps = PROTOCOLS.get(s.protocol).build(cfg, data)
    for t, step in enumerate(steps):
        if len(step.train_rows) == 0 or len(step.test_rows) == 0:
            names = ", ".join(data.class_names[c] for c in step.classes)
            raise UserError(
                f"scenario: step {t} ({names}) has no {'training' if len(step.train_rows) == 0 else 'test'} image"
            )
    _check_replay_size(cfg, len(data.class_names), sum(len(step.train_rows) for step in steps))
    plan = StepPlan(data, steps)
    if cfg.eval.per_task:
        plan.class_groups, plan.groups_source = class_groups(
            cfg.eval.groups, dataset_classes, data.class_names, train_counts(steps)
        )
    return plan
