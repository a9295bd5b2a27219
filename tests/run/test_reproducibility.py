"""Reproducibility on CUDA: train.deterministic's switches, and the checkpoint's CUDA generator
state, which is this process's GPU's alone so that a resume may see fewer GPUs.

There is no GPU here: the CUDA generator calls are replaced by fakes that hold one state per
device index, and the switches are read back from torch."""

import os

import pytest
import torch
from run_helpers import argv

from cml.commands.cli import main
from cml.runtime import checkpoint
from cml.runtime.setup import set_determinism
from cml.strategies._base import MultiLabelStrategy


@pytest.fixture
def torch_switches(monkeypatch):
    """The global switches as they were, put back after the test."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored by monkeypatch
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]


def switches() -> tuple:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


def test_default_autotunes_and_deterministic_turns_every_switch(torch_switches):
    set_determinism(False)
    assert switches() == (False, False, True, None)
    set_determinism(True)
    assert switches() == (True, True, False, ":4096:8")
    set_determinism(False)  # a later run in the same process gets the default back
    assert switches()[:3] == (False, False, True)


def test_a_run_with_train_deterministic_trains_under_deterministic_algorithms(tmp_path, monkeypatch, torch_switches):
    seen = []
    real = MultiLabelStrategy.criterion

    def criterion(self):  # what training itself runs under
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(self)

    monkeypatch.setattr(MultiLabelStrategy, "criterion", criterion)
    assert main(argv(tmp_path / "data", tmp_path / "run", ["train.deterministic=true"])) == 0
    assert seen and all(seen)


class FakeGpus:
    """n GPUs, each with its own generator state (a distinct byte tensor); `current` is this
    process's device. Asking for every GPU's state at once is refused: a resume may see fewer."""

    def __init__(self, monkeypatch, n: int, current: int):
        self.states = [torch.full((16,), 10 + i, dtype=torch.uint8) for i in range(n)]
        self.current = current
        self.restored = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(self.states))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_all)

    def index(self, device) -> int:
        device = torch.device(device)
        return self.current if device.index is None else device.index

    def get(self, device="cuda"):
        return self.states[self.index(device)].clone()

    def set(self, state, device="cuda"):
        self.restored.append((self.index(device), state.clone()))

    def set_all(self, states):
        if len(states) > len(self.states):
            raise RuntimeError("invalid device ordinal")  # what CUDA says of a GPU no longer visible
        self.restored += [(i, s.clone()) for i, s in enumerate(states)]


def test_the_checkpoint_holds_this_gpus_generator_state_alone(monkeypatch):
    gpus = FakeGpus(monkeypatch, n=4, current=2)
    state = checkpoint.rng_state()
    assert torch.equal(state["cuda"], gpus.states[2])


def test_a_resume_with_fewer_gpus_visible_restores_this_gpus_state(monkeypatch):
    with pytest.MonkeyPatch.context() as before:  # saved by a process on GPU 3 of 4
        FakeGpus(before, n=4, current=3)
        state = checkpoint.rng_state()
    gpus = FakeGpus(monkeypatch, n=1, current=0)  # resumed with one GPU visible
    checkpoint.set_rng_state(state)
    assert [i for i, _ in gpus.restored] == [0]
    assert torch.equal(gpus.restored[0][1], torch.full((16,), 13, dtype=torch.uint8))


@pytest.mark.parametrize("current, expected", [(1, [(1, 11)]), (3, [])])
def test_an_older_checkpoint_of_every_gpu_restores_this_gpus_entry(monkeypatch, current, expected):
    """A list (every GPU the saving process saw, by index): this device's entry, none if it had none."""
    state = checkpoint.rng_state()  # the CPU generators, real
    state["cuda"] = [torch.full((16,), 10 + i, dtype=torch.uint8) for i in range(2)]
    gpus = FakeGpus(monkeypatch, n=4, current=current)
    checkpoint.set_rng_state(state)
    assert [(i, int(s[0])) for i, s in gpus.restored] == expected
