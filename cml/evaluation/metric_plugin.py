"""The Avalanche metric that scores each test experience with the multi-label metrics.

Avalanche's accuracy and forgetting metrics compare argmax predictions with one int label; this
one collects sigmoid scores and multi-hot targets over the whole experience and reports mAP, CP,
CR, CF1, macro F1, OP, OR, OF1, per-class AP and the mAP of each step's classes. Values are
published under the same names for every strategy, with the training step as x, so that the
TensorBoard scalars of different runs overlay. The default values cover the seen classes, also
when the head has every class from the start (`model.outputs: all`). With `tasks` (from
`eval.per_task`), each step also gets PRS's per-task values (`cml.evaluation.per_task`) over all
of the head's outputs, under `per_task`.

`strategy.eval(benchmark.test_stream)` (Avalanche's idiom) after step t: test experience j <= t
is scored on step j's seen classes with the current model; j > t (classes not trained yet), or
one whose classes the head lacks, is skipped: nothing published. Every value's x is t, the last
trained step, so no logger sees an x go back: `eval/*` (and the per-class, per-step and PRS
values) are experience t's, `eval_exp_<metric>/exp<j>` experience j's (one curve per test
experience, from x = j on). A model nothing trained in this process (loaded weights) has no t:
its values are published at x = j.
"""

from __future__ import annotations

import math

import torch
from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import AlternativeValues, MetricValue

from cml.evaluation.metrics import multilabel_metrics
from cml.evaluation.per_task import per_task_values
from cml.runtime import distributed

SCALARS = {
    "map": "mAP",
    "cp": "CP",
    "cr": "CR",
    "cf1": "CF1",
    "macro_f1": "macro_F1",
    "op": "OP",
    "or": "OR",
    "of1": "OF1",
}


class MultiLabelMetrics(PluginMetric[dict]):
    def __init__(
        self,
        class_names: list[str],
        step_classes: list[list[int]],
        threshold: float,
        strict: bool = False,
        tasks: list[list[tuple[int, object]]] | None = None,
        groups: dict[str, list[int]] | None = None,
    ):
        super().__init__()
        self.class_names = class_names
        self.step_classes = step_classes
        self.threshold = threshold
        self.strict = strict
        self.tasks = tasks  # per step: (task, positions of its test images) for the tasks run so far
        self.groups = groups
        self.last: dict | None = None  # the values of the last scored test experience
        self.trained: int | None = None  # the last step trained in this process
        self.scored: tuple[int, dict] | None = None  # (x, values) of the last scored experience, for loggers
        self._skip = False  # the experience being evaluated has classes not trained yet
        self.reset()

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def result(self) -> dict | None:
        return self.last

    def after_training_exp(self, strategy) -> None:
        self.trained = strategy.experience.step

    def trained_step(self, strategy) -> int | None:
        """The last trained step: trained in this process, or the restored clock's after a resume;
        None for a model nothing has trained here (loaded weights, an untrained head)."""
        if self.trained is not None:
            return self.trained
        counter = strategy.clock.train_exp_counter
        return counter - 1 if counter else None

    def before_eval_exp(self, strategy) -> None:
        self.reset()
        trained = self.trained_step(strategy)
        self._skip = trained is not None and strategy.experience.step > trained

    def after_eval_iteration(self, strategy) -> None:
        super().after_eval_iteration(strategy)
        if self._skip:
            return
        logits = strategy.mb_output.detach().float()
        self._scores.append(torch.sigmoid(logits).cpu())
        self._targets.append(strategy.mb_y[:, : logits.shape[1]].detach().cpu())

    def after_eval_exp(self, strategy) -> list[MetricValue]:
        step, trained = strategy.experience.step, self.trained_step(strategy)
        n_seen = sum(len(c) for c in self.step_classes[: step + 1])
        width = self._scores[0].shape[1] if self._scores else n_seen  # the head's outputs
        if self._skip or width < n_seen:  # every rank has the same head: none is left in the gather below
            self.reset()
            return []
        x = step if trained is None else trained
        values = self._values(step, n_seen)
        self.last, self.scored = values, (x, values)
        self.reset()
        out = [MetricValue(self, f"eval_exp_{label}/exp{step}", values[key], x) for key, label in SCALARS.items()]
        if step != x:
            return out
        out += [MetricValue(self, f"eval/{label}", values[key], x) for key, label in SCALARS.items()]
        out += [
            MetricValue(self, f"eval_step_mAP/step{j}", v, x)
            for j, v in enumerate(values["step_map"])
            if not math.isnan(v)
        ]
        out += [
            MetricValue(self, f"eval_class_AP/{name}", v, x)
            for name, v in values["per_class_ap"].items()
            if not math.isnan(v)
        ]
        if self.tasks is not None:
            tally = values["per_task"]["tally"]
            named = [("tally", k, tally[k]) for k in ("map", "cf1", "of1")]
            named += [(g, k, v[k]) for g, v in tally.get("groups", {}).items() for k in ("map", "cf1", "of1")]
            out += [
                MetricValue(self, f"eval_prs/{where}_{SCALARS[k]}", v, x) for where, k, v in named if not math.isnan(v)
            ]
        return out

    def _values(self, step: int, n_seen: int) -> dict:
        """Test experience STEP's values over its N_SEEN seen classes (steps 0..STEP)."""
        # under torchrun each rank scored a contiguous part of the test set: rank order is row order
        scores, targets = (distributed.all_gather_cat(torch.cat(part)) for part in (self._scores, self._targets))
        values = multilabel_metrics(scores[:, :n_seen], targets[:, :n_seen], self.threshold, self.strict)
        ap = values.pop("per_class_ap")
        values["per_class_ap"] = {self.class_names[c]: a for c, a in enumerate(ap)}
        values["step_map"] = [_nanmean([ap[c] for c in classes]) for classes in self.step_classes[: step + 1]]
        values["step"] = step
        if self.tasks is not None:
            values["per_task"] = per_task_values(
                scores, targets, self.tasks[step], self.groups, self.threshold, self.strict
            )
        return values

    def __str__(self) -> str:
        return "MultiLabelMetrics"


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def scalars(metric_value):
    """(name, number) pairs of one MetricValue, a dict value flattened as Avalanche's BaseLogger
    does; images, figures and tensors are left out."""
    value = metric_value.value
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for key, v in items:
        if isinstance(v, AlternativeValues):
            v = v.best_supported_value(float, int)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            yield (metric_value.name if key is None else f"{metric_value.name}/{key}"), v
