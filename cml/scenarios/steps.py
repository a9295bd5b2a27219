"""Config + loaded data -> the steps of the protocol: classes, images and targets of each step.

Plain numpy, no torch and no Avalanche: `python -m cml plan` and the scenario builder share it, so
what `plan` prints is what a run trains and tests on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cml.config import Config
from cml.datasets._types import MultiLabelData
from cml.errors import UserError
from cml.registry import PROTOCOLS
from cml.scenarios.groups import class_groups
from cml.scenarios.split import Step


@dataclass
class StepPlan:
    data: MultiLabelData  # columns in class order
    steps: list[Step]
    class_groups: dict[str, list[int]] | None = None  # eval.per_task: majority / moderate / minority
    groups_source: str | None = None


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
            raise UserError(f"scenario: step {t} ({names}) has no "
                            f"{'training' if len(step.train_rows) == 0 else 'test'} image")
    plan = StepPlan(data, steps)
    if cfg.eval.per_task:
        plan.class_groups, plan.groups_source = class_groups(cfg.eval.groups, dataset_classes, data.class_names,
                                                             train_counts(steps))
    return plan
