"""The metric a run scores its test sets with, from the config's `eval` section: one definition
for a run (`cml.experiment`) and for `python -m cml eval`, so both score alike."""

from __future__ import annotations

from cml.evaluation.metric_plugin import MultiLabelMetrics


def build_metric(cfg, scenario) -> MultiLabelMetrics:
    return MultiLabelMetrics(
        scenario.class_names,
        [s.classes for s in scenario.steps],
        cfg.eval.threshold,
        cfg.eval.strict,
        [s.test_tasks for s in scenario.steps] if cfg.eval.per_task else None,
        scenario.class_groups,
    )
