"""Avalanche's idiom `strategy.eval(benchmark.test_stream)` on a cml experiment, before and after
each step of a tiny two-step run: experiences of steps not trained yet are skipped, earlier ones
are scored on their own step's classes with the current model (checked against a plain numpy mAP
of the scores the model gave), every value is published at x = the last trained step, and the
Experiment's own evaluation still reads its step's value."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.logging import BaseLogger
from tests_helpers import tiny

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [*tiny(), "scenario.base=3", "scenario.increment=3"]  # 6 classes in 2 steps


class Scores(SupervisedPlugin):
    """The sigmoid scores and targets of the last evaluation of each test experience."""

    def __init__(self):
        super().__init__()
        self.by_experience: dict[int, list] = {}

    def before_eval_exp(self, strategy, **kwargs):
        self.by_experience[strategy.experience.step] = []

    def after_eval_iteration(self, strategy, **kwargs):
        scores = torch.sigmoid(strategy.mb_output.float()).numpy()
        self.by_experience[strategy.experience.step].append((scores, strategy.mb_y.numpy()))

    def arrays(self, step):
        parts = self.by_experience[step]
        return np.concatenate([s for s, _ in parts]), np.concatenate([y for _, y in parts])


class Values(BaseLogger):
    """Every (name, value, x) a logger is given."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, float, int]] = []

    def log_single_metric(self, name, value, x_plot):
        self.seen.append((name, value, x_plot))


def plain_map(scores: np.ndarray, targets: np.ndarray, n_classes: int) -> float:
    """Mean over classes with a positive of the precision at each positive's rank (no ties)."""
    aps = []
    for c in range(n_classes):
        order = np.argsort(-scores[:, c])
        hits = targets[order, c] == 1
        if hits.any():
            aps.append(np.mean(np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)))
    return 100 * float(np.mean(aps))


def test_the_whole_test_stream_after_each_step(tmp_path):
    import cml

    scores, values = Scores(), Values()
    overrides = [*SETTINGS, f"data.root={tmp_path / 'data'}"]
    out = tmp_path / "run"
    with cml.Experiment.from_config(
        ROOT / "configs/demo.yaml", overrides, out=out, plugins=[scores], loggers=[values], verbose=False
    ) as exp:
        stream = exp.benchmark.test_stream
        exp.strategy.eval(stream)  # nothing trained: every experience skipped
        assert exp.metric.result() is None and not [v for v in values.seen if v[0].startswith("eval")]
        n_seen = [s.n_seen for s in exp.steps]
        for t in range(2):
            record = exp.train_step()
            assert record["map"] == pytest.approx(plain_map(*scores.arrays(t), n_seen[t]))
            start = len(values.seen)
            exp.strategy.eval(stream)
            published = {(name, x): v for name, v, x in values.seen[start:] if name.startswith("eval")}
            assert {x for _, x in published} == {t}  # all at the last trained step
            for j in range(2):
                if j > t:  # classes the model has not trained on: nothing published
                    assert not [k for k in published if k[0].endswith(f"/exp{j}")]
                    continue
                assert published[f"eval_exp_mAP/exp{j}", t] == pytest.approx(plain_map(*scores.arrays(j), n_seen[j]))
                assert all(math.isfinite(published[f"eval_exp_{m}/exp{j}", t]) for m in ("CF1", "OF1", "macro_F1"))
            assert published["eval/mAP", t] == pytest.approx(record["map"])  # the same model as train_step's
            assert exp.metric.result()["step"] == t and exp.metric.result()["map"] == pytest.approx(record["map"])
    last_x: dict[str, int] = {}
    for name, _, x in values.seen:  # the whole run: train_step's values, the streams', Avalanche's loss
        assert x >= last_x.get(name, x), name
        last_x[name] = x
    assert last_x["eval_exp_mAP/exp0"] == 1 and last_x["eval/mAP"] == 1
    assert "Loss_Epoch/train_phase/train_stream" in last_x


def test_evaluating_the_stream_between_steps_leaves_the_training_as_it_was(tmp_path):
    """Each DataLoader draws its base seed from torch's generator; an `eval(test_stream)` between
    steps restores it, so the run trains on the same batches and flips as without it (before,
    step 1's mAP moved, 52.40 against 47.97 on a run like this one)."""
    import json

    import cml
    from cml.evaluation.results import reproducible

    overrides = [*SETTINGS, f"data.root={tmp_path / 'data'}", "train.hflip=true", "train.crop_scale=0.5"]
    found, config = {}, ROOT / "configs/demo.yaml"
    for name, evaluate in (("plain", False), ("evaluated", True)):
        with cml.Experiment.from_config(config, overrides, out=tmp_path / name, verbose=False) as exp:
            for _ in range(2):
                exp.train_step()
                if evaluate:
                    exp.strategy.eval(exp.benchmark.test_stream)
                    exp.strategy.eval(exp.benchmark.test_stream[:1])
        found[name] = reproducible(json.loads((tmp_path / name / "results.json").read_text()))
    assert found["plain"]["steps"][1]["map"] == found["evaluated"]["steps"][1]["map"]
    assert found["plain"] == found["evaluated"]
