"""The CUDA path on the CPU: whole `cml run`s, fresh and then stopped and resumed, with `meta` as the
training device (tests/device_emulation.py). torch refuses any CPU/device mix (a previous model or
optimizer state left on the CPU by a resume fails here as on a GPU), and the host reads of device
values made during the training iterations are counted against a budget.

The budget, per training epoch (what the host waits for the GPU for): the non-finite guard reads
its flags every CHECK_EVERY batches and, at the end of the epoch, once more with the weights'
finiteness (2); the progress line reads the epoch's mean loss when it prints (off a terminal: at
the end of the epoch and at most once more, FIRST_LINE_S after the step starts). Nothing is read
per iteration: a read per batch would exceed the budget, as the runs here have at least 5 batches
per epoch. Per-step passes (calibration, herding, the EWC Fisher, evaluation) are outside it.
"""

import json

import pytest
from device_emulation import meta_device
from tests_helpers import interrupt_after_step, model_overrides, run_cli, tiny

from cml.strategies._nonfinite import CHECK_EVERY

READS_PER_EPOCH = 4
CASES = {
    "krt-r": ("demo_krt", []),
    "pod-r": (
        "demo",
        [
            "strategy.plugins=[herding,pod]",
            "strategy.replay.per_class=2",
            "strategy.replay.relabel=true",
            "strategy.replay.mix=concat",
        ],
    ),
    "csc": ("demo_csc", []),
    "l3a": ("demo_l3a", []),
    "multilane": ("demo_multilane", model_overrides("multilane")),
    "prs-online-stream": (
        "demo",
        [
            "strategy.plugins=[prs,lwf,ewc,pseudo]",
            "strategy.replay.size=20",
            "train.online=true",
            "train.optimizer_scope=stream",
        ],
    ),
    # the other models, each with another replay buffer and regulariser
    "dlfl-ocdm-lwf": ("demo", ["model.name=dlfl", "strategy.plugins=[ocdm,lwf]", "strategy.replay.size=20"]),
    "srn-reservoir-pseudo": (
        "demo",
        ["model.name=srn", "strategy.plugins=[reservoir,pseudo]", "strategy.replay.size=20"],
    ),
    "dr-ewc": ("demo", ["model.name=dr", "strategy.plugins=[ewc]"]),  # dr: the discriminative loss on
}


def _assert_within_budget(reads, window) -> None:
    counted = reads.reads_in_epochs()
    budget = READS_PER_EPOCH * window.epochs + window.iterations // CHECK_EVERY
    assert window.iterations >= (READS_PER_EPOCH + 1) * window.epochs  # a read per batch would show
    assert sum(counted.values()) <= budget, f"{sum(counted.values())} host reads > {budget}: {counted.most_common()}"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.mark.parametrize("case", CASES)
def test_fresh_and_resumed_runs_on_a_stand_in_device(case, data_root, tmp_path, monkeypatch):
    """Step 0 trained afresh and checkpointed, the run stopped, step 1 resumed from the checkpoint:
    the restored model, previous model, optimizer and plugin state meet the device's tensors."""
    config, extra = CASES[case]
    overrides = tiny() + [
        f"data.root={data_root}",
        "scenario.base=3",
        "scenario.increment=3",
        "train.batch_size=4",
        *extra,
    ]
    config = f"configs/{config}.yaml"
    with meta_device(monkeypatch) as (reads, window):
        real_save = interrupt_after_step(monkeypatch, 0)
        assert run_cli(config, tmp_path, overrides) == 130
        monkeypatch.setattr("cml.runtime.checkpoint.save", real_save)
        assert run_cli(config, tmp_path, overrides, "--resume") == 0
        _assert_within_budget(reads, window)
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["steps"]) == results["n_steps"] == 2
