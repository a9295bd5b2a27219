"""Replay plugins inside the real strategy on the generated dataset: what each training batch
holds, when the buffer sees the stream (online and epoch modes), concat mode, KRT's relabelling,
resume with each buffer, and bad options."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from tests_helpers import interrupt_after_step, tiny

from cml.commands.cli import main
from cml.config import load_config
from cml.core.registry import DATASETS, STRATEGIES
from cml.evaluation.progress import ProgressLogger
from cml.evaluation.results import reproducible
from cml.models._build import build_model
from cml.plugins._base import build_plugin
from cml.runtime import checkpoint
from cml.scenarios.builder import build_scenario

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


class Probe(SupervisedPlugin):
    """Records each training batch as the strategy sees it, and the buffer at that moment."""

    def __init__(self, replay):
        super().__init__()
        self.replay = replay
        self.batches = []

    def before_training_iteration(self, strategy, **kwargs):
        buffer = self.replay.buffer
        stored = {
            (int(r), tuple(t))
            for r, t in zip(buffer.rows[: buffer.size], self.replay.stored_targets(np.arange(buffer.size)).tolist())
        }
        incoming = len(self.replay.incoming[0]) if self.replay.incoming else len(strategy.mb_rows)
        self.batches.append(
            (strategy.experience.step, strategy.mb_rows.tolist(), strategy.mb_y.tolist(), stored, incoming)
        )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One generated dataset for the whole module."""
    return tmp_path_factory.mktemp("replay-data")


def train_steps(data_root, overrides, steps=2):
    cfg = load_config(DEMO, tiny() + [f"data.root={data_root}"] + overrides)
    scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))
    replay = build_plugin(cfg.strategy.plugins[0], cfg, scenario)
    probe = Probe(replay)
    strategy = STRATEGIES.get("finetune").build(
        cfg,
        scenario,
        model=build_model(cfg),
        train_cfg=cfg.train,
        eval_batch_size=32,
        device="cpu",
        plugins=[probe, replay],
        evaluator=EvaluationPlugin(loggers=[ProgressLogger(io.StringIO())]),
    )  # probe first
    sizes = []
    for t in range(steps):
        strategy.train(scenario.benchmark.train_stream[t], eval_streams=[])
        sizes.append((strategy.train_size, len(replay.buffer), replay.buffer.seen))
    return scenario, replay, probe, sizes


def check_replayed_items(probe, ratio):
    """Each batch: its incoming samples, then min(|M|, round(ratio * incoming)) distinct buffer items
    with the targets stored for them."""
    replayed = 0
    for step, rows, targets, stored, incoming in probe.batches:
        k = len(rows) - incoming
        assert k == min(len(stored), int(ratio * incoming + 0.5))
        for row, target in zip(rows[incoming:], targets[incoming:]):
            assert (row, tuple(target)) in stored
        assert len(set(zip(rows[incoming:], map(tuple, targets[incoming:])))) == k
        replayed += k
    return replayed


def test_online_batches_are_joined_and_offered_after_each_step(data_root):
    scenario, replay, probe, sizes = train_steps(
        data_root,
        ["strategy.plugins=[prs]", "train.online=true", "strategy.replay.size=12", "strategy.replay.batch_ratio=0.5"],
    )
    assert check_replayed_items(probe, 0.5) > 0
    first = probe.batches[0]
    assert len(first[1]) == 16 and not first[3]  # the first batch: nothing stored yet
    assert all(len(b[1]) > b[4] for b in probe.batches[1:])  # from then on, every batch replays
    # every incoming sample was offered once, after its own gradient step (a last batch of one
    # sample is dropped by the strategy, so it is neither trained on nor offered)
    assert sizes[0][2] == sum(b[4] for b in probe.batches if b[0] == 0)
    assert sizes[1][2] == sum(b[4] for b in probe.batches)
    assert sizes[0][0] == len(scenario.steps[0].train_rows)  # the training set is unchanged


def test_epoch_mode_fills_the_buffer_at_the_end_of_each_step(data_root):
    scenario, replay, probe, sizes = train_steps(
        data_root, ["strategy.plugins=[reservoir]", "train.epochs=2", "strategy.replay.size=12"]
    )
    step0 = [b for b in probe.batches if b[0] == 0]
    assert all(not b[3] and b[4] <= 16 for b in step0)  # no replay while the buffer is empty
    assert sizes[0][1:] == (12, len(scenario.steps[0].train_rows))
    step1 = [b for b in probe.batches if b[0] == 1]
    assert check_replayed_items(probe, 1.0) == sum(min(12, b[4]) for b in step1)  # every step-1 batch replays
    step0_rows = set(scenario.steps[0].train_rows.tolist())
    for _, rows, _, stored, _ in step1:  # during step 1, the buffer holds step 0's samples only
        assert {r for r, _ in stored} <= step0_rows


def test_concat_mode_joins_the_training_set(data_root):
    scenario, replay, probe, sizes = train_steps(
        data_root, ["strategy.plugins=[ocdm]", "strategy.replay.mix=concat", "strategy.replay.size=10"]
    )
    assert sizes[0][0] == len(scenario.steps[0].train_rows)
    assert sizes[1][0] == len(scenario.steps[1].train_rows) + 10  # the buffer after step 0
    assert all(len(b[1]) <= 16 for b in probe.batches)  # batches are not enlarged


def test_relabel_widens_stored_targets_to_the_current_step(data_root):
    scenario, replay, probe, _ = train_steps(
        data_root,
        ["strategy.plugins=[herding]", "strategy.replay.per_class=3", "strategy.replay.relabel=true"],
        steps=3,
    )
    buffer, labels = replay.buffer, scenario.data.train.labels
    assert 0 < buffer.size <= 3 * 6 and set(buffer.first_class[: buffer.size].tolist()) == {0, 2, 4}
    relabelled = replay.stored_targets(np.arange(buffer.size))
    for slot in range(buffer.size):  # at step 2 (6 classes seen): true labels from the first class on
        first = buffer.first_class[slot]
        expected = np.zeros(6, dtype=np.float32)
        expected[first:6] = labels[buffer.rows[slot], first:6]
        assert relabelled[slot].tolist() == expected.tolist()
        # as stored: the labels of its own step only
        assert buffer.targets[slot].tolist() == [
            float(labels[buffer.rows[slot], c]) if first <= c < first + 2 else 0.0 for c in range(6)
        ]
    assert check_replayed_items(probe, 1.0) > 0


def cli(data_root, out, overrides, *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in tiny() + overrides + [f"data.root={data_root}"]:
        args += ["--set", item]
    return main(args + list(extra))


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy.plugins=[prs]", "train.online=true", "strategy.replay.size=12"],
        ["strategy.plugins=[ocdm]", "train.epochs=2", "strategy.replay.size=12"],
        ["strategy.plugins=[reservoir]", "strategy.replay.size=12", "strategy.replay.mix=concat"],
        ["strategy.plugins=[herding]", "strategy.replay.per_class=2", "strategy.replay.relabel=true"],
    ],
    ids=["prs-online", "ocdm-epochs", "reservoir-concat", "herding-relabel"],
)
def test_resume_with_a_buffer_equals_the_uninterrupted_run(data_root, tmp_path, monkeypatch, overrides):
    full = tmp_path / "full"
    assert cli(data_root, full, overrides) == 0
    real_save = interrupt_after_step(monkeypatch, 1)
    killed = tmp_path / "killed"
    assert cli(data_root, killed, overrides) == 130
    name = overrides[0].split("[")[1].rstrip("]")  # plugin state is saved under the registered name
    saved = checkpoint.load(killed, 3)["strategy"]["plugins"][name]
    assert len(saved["rows"]) > 0  # the step-2 run depends on a non-empty buffer
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert cli(data_root, killed, overrides, "--resume") == 0
    assert reproducible(json.loads((full / "results.json").read_text())) == reproducible(
        json.loads((killed / "results.json").read_text())
    )


@pytest.mark.parametrize(
    "override, key",
    [
        ("strategy.replay.size=0", "strategy.replay.size"),
        ("strategy.replay.size=-5", "strategy.replay.size"),
        ("strategy.replay.rho=1.5", "strategy.replay.rho"),
        ("strategy.replay.batch_ratio=-1", "strategy.replay.batch_ratio"),
        ("strategy.replay.per_class=0", "strategy.replay.per_class"),
        ("strategy.replay.mix=stack", "strategy.replay.mix"),
        ("strategy.plugins=[prs,ocdm]", "strategy.plugins: prs and ocdm are both replay buffers"),
        ("strategy.plugins=[prss]", "strategy.plugins: unknown plugin 'prss'"),
    ],
)
def test_bad_replay_options_exit_2_naming_the_key(data_root, tmp_path, capsys, override, key):
    assert cli(data_root, tmp_path / "run", ["strategy.plugins=[prs]", override]) == 2
    err = capsys.readouterr().err
    assert key in err and err.count("\n") == 1
