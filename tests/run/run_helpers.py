"""Shared by tests/run: the tiny two-step run, its files, and the faults the tests inject."""

import json
import os
import signal
from pathlib import Path

from tests_helpers import tiny

from cml.evaluation.results import reproducible
from cml.runtime import checkpoint
from cml.runtime.lock import LOCK_FILE
from cml.strategies._base import MultiLabelStrategy

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
TWO_STEPS = tiny() + ["scenario.base=3", "scenario.increment=3"]  # 6 classes in 2 steps


def argv(data: Path, out: Path, overrides=(), *extra) -> list[str]:
    words = ["run", DEMO, "--out", str(out)]
    for item in [*TWO_STEPS, *overrides, f"data.root={data}"]:
        words += ["--set", item]
    return words + list(extra)


def results(out: Path) -> dict:
    """results.json without what the machine measured (times, memory): what two runs share."""
    return reproducible(json.loads((out / "results.json").read_text()))


def saved_step(out: Path) -> int:
    return checkpoint.load(out, 2)["step"]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_FILE)


def poison_loss(monkeypatch, at: set[tuple[int, int]]) -> None:
    """The loss becomes NaN at the given (step, batch index) pairs."""
    real = MultiLabelStrategy.criterion

    def criterion(self):
        loss = real(self)
        hit = self.is_training and (self.experience.step, self.clock.train_epoch_iterations) in at
        return loss * float("nan") if hit else loss

    monkeypatch.setattr(MultiLabelStrategy, "criterion", criterion)


def signal_once(monkeypatch, target, name: str, when) -> None:
    """`target.name` sends this process SIGTERM once, the first time `when(args)` holds."""
    real, sent = getattr(target, name), []

    def wrapper(*args, **kwargs):
        if not sent and when(*args):
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
