"""Config + loaded data -> an Avalanche benchmark with one train and one test experience per step.

Avalanche's class-incremental generators (`nc_benchmark`, `classes_timeline`) read one int label
per sample, so they cannot split multi-hot data. The steps come from `cml.protocols.steps` (numpy
only, shared with `python -m cml plan`); we hand the per-step datasets to
`benchmark_from_datasets`, then record each step's classes on its experiences ourselves:
`classes_in_this_experience` (train: the step's new classes; test: every class seen so far, which
is what it is scored on), `n_outputs` (the model's outputs once the step is trained: the classes
seen so far, or every class with `model.outputs: all` as in PRS's code) and `step`, a plain index
that, unlike Avalanche's `current_experience`, is not masked during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.utils import AvalancheDataset

from cml.config import Config
from cml.datasets._types import MultiLabelData
from cml.protocols.split import Step, joint_rows_and_targets
from cml.protocols.steps import plan_steps
from cml.scenarios.augment import Augment
from cml.scenarios.geometry import Geometry
from cml.scenarios.images import MultiLabelImages


@dataclass
class Scenario:
    benchmark: object  # avalanche CLScenario with train_stream and test_stream
    data: MultiLabelData  # columns in class order
    steps: list[Step]
    geometry: Geometry
    augment: Augment | None
    pixels: tuple | None = None  # cached (train, test) images (cml.scenarios.cache)
    class_groups: dict[str, list[int]] | None = None  # eval.per_task: majority / moderate / minority

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    def train_images(self, rows: np.ndarray, targets: np.ndarray) -> MultiLabelImages:
        """Training images `rows` of `data.train` with the given targets (augmented)."""
        pixels = self.pixels[0] if self.pixels else None
        return MultiLabelImages(
            [self.data.train.paths[i] for i in rows], targets, self.geometry, self.augment, pixels, rows, "train"
        )

    def train_dataset(self, rows: np.ndarray, targets: np.ndarray) -> AvalancheDataset:
        return AvalancheDataset([self.train_images(rows, targets)])

    def test_dataset(self, step: Step) -> AvalancheDataset:
        pixels = self.pixels[1] if self.pixels else None
        images = MultiLabelImages(
            [self.data.test.paths[i] for i in step.test_rows],
            step.test_targets,
            self.geometry,
            None,
            pixels,
            step.test_rows,
            "test",
        )
        return AvalancheDataset([images])

    def joint_dataset(self, t: int) -> AvalancheDataset:
        train = self.data.train
        return self.train_dataset(*joint_rows_and_targets(train.labels, self.steps[t].n_seen, train.select))


def build_scenario(cfg: Config, data: MultiLabelData) -> Scenario:
    plan = plan_steps(cfg, data)
    data, steps = plan.data, plan.steps
    pixels = None
    if cfg.data.cache:
        from cml.scenarios.cache import cached_pixels

        pixels = cached_pixels(data, cfg.data)
    # with augment_on_device the strategy augments whole batches on the device instead
    augment = None if cfg.train.augment_on_device else Augment(cfg.train, cfg.data.image_size)
    scenario = Scenario(None, data, steps, Geometry.of(cfg.data), augment, pixels, plan.class_groups)
    train = [scenario.train_dataset(st.train_rows, st.train_targets) for st in steps]
    test = [scenario.test_dataset(st) for st in steps]
    scenario.benchmark = benchmark_from_datasets(train=train, test=test)
    for t, step in enumerate(steps):
        train_exp, test_exp = scenario.benchmark.train_stream[t], scenario.benchmark.test_stream[t]
        train_exp.classes_in_this_experience = list(step.classes)
        test_exp.classes_in_this_experience = list(range(step.n_seen))
        train_exp.n_outputs = len(data.class_names) if cfg.model.outputs == "all" else step.n_seen
        train_exp.step = test_exp.step = t
    return scenario
