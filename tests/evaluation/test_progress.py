"""Progress off a terminal: timed lines with batch, loss, rate and time left; on a terminal, a bar.

The logger's clock is replaced by one that a plugin advances by exactly one second per batch, so
every line's batch, rate and time left are known by hand."""

import io
import re
from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from tests_helpers import tiny

from cml.config import load_config
from cml.core.registry import DATASETS
from cml.evaluation import progress
from cml.evaluation.progress import ProgressLogger
from cml.models.linear.model import LinearModel
from cml.scenarios.builder import build_scenario
from cml.strategies._base import MultiLabelStrategy

LINE = re.compile(
    r"step 0 epoch (\d)/2 batch (\d+)/(\d+) loss (\d+\.\d+) \| (\d+\.\d) images/s \| "
    r"(\d+):(\d\d):(\d\d) left in the step"
)


class Clock(SupervisedPlugin):
    """One second per batch, advanced before the logger looks; records the losses and batch sizes."""

    def __init__(self):
        super().__init__()
        self.now = 1000.0
        self.losses, self.sizes = [], []
        self.batches = 0  # per epoch

    def before_training_exp(self, strategy, **kwargs):
        self.batches = len(strategy.dataloader)

    def after_training_iteration(self, strategy, **kwargs):
        self.now += 1.0
        self.losses.append(float(strategy.loss.detach()))
        self.sizes.append(len(strategy.mb_y))


def train_step(tmp_path, monkeypatch, stream, every_s):
    cfg = load_config(None, tiny() + [f"data.root={tmp_path}", "train.batch_size=4", "train.epochs=2"])
    scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))
    clock = Clock()
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    torch.manual_seed(0)
    strategy = MultiLabelStrategy(
        model=LinearModel("test_resnet"),
        train_cfg=cfg.train,
        eval_batch_size=32,
        device="cpu",
        plugins=[clock],
        evaluator=EvaluationPlugin(loggers=[ProgressLogger(stream, every_s=every_s)]),
    )
    strategy.train(scenario.benchmark.train_stream[0], eval_streams=[])
    return clock, clock.batches


def test_a_log_file_gets_timed_lines_with_rate_and_time_left(tmp_path, monkeypatch):
    log = io.StringIO()  # not a terminal
    clock, n = train_step(tmp_path, monkeypatch, log, every_s=1.5)
    lines = log.getvalue().splitlines()
    assert n >= 4 and all(LINE.fullmatch(line) for line in lines), lines
    # by hand: the first line once 1.5 s have passed (batch 2), then 1.5 s after the last line, and
    # a line at the end of each epoch; the clock reads b seconds after b batches of the step
    expected, next_line = [], 1.5
    for b in range(1, 2 * n + 1):
        epoch, i = (b - 1) // n + 1, (b - 1) % n + 1
        if b >= next_line or i == n:
            expected.append((epoch, i, b))
            next_line = b + 1.5
    assert len(expected) >= 2 + 3  # periodic lines besides the two epoch ends
    assert len(lines) == len(expected)
    for line, (epoch, i, b) in zip(lines, expected):
        got = LINE.fullmatch(line).groups()
        assert (int(got[0]), int(got[1]), int(got[2])) == (epoch, i, n)
        epoch_losses = clock.losses[(epoch - 1) * n : b]
        assert float(got[3]) == pytest.approx(sum(epoch_losses) / len(epoch_losses), abs=1e-4)
        assert float(got[4]) == pytest.approx(sum(clock.sizes[:b]) / b, abs=0.05)  # images per second
        hours, minutes, seconds = map(int, got[5:])
        assert hours * 3600 + minutes * 60 + seconds == 2 * n - b  # one second per batch left


def test_the_first_line_comes_within_seconds_whatever_every_s(tmp_path, monkeypatch):
    log = io.StringIO()
    _, n = train_step(tmp_path, monkeypatch, log, every_s=3600)
    batches = [int(LINE.fullmatch(line).group(2)) for line in log.getvalue().splitlines()]
    first = int(progress.FIRST_LINE_S)
    assert batches == ([first] if first < n else []) + [n, n]  # after 5 s, then the two epoch ends


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_with_rate_and_time_left(tmp_path, monkeypatch):
    screen = Terminal()
    _, n = train_step(tmp_path, monkeypatch, screen, every_s=0.5)
    text = screen.getvalue()
    assert re.search(rf"step 0: .*\| \d+/{2 * n} \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(batch/s|s/batch)", text)  # left, rate
    assert "left in the step" not in text  # no plain lines on a terminal
