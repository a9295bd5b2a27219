"""Every pass over a step loads its images as training does (data.num_workers, pinned memory off
the CPU), not with a 0-worker unpinned loader: L3A's statistics pass, the pseudo-label threshold
calibration, herding's features and EWC's Fisher. And `data.num_workers: auto`, resolved for the
device the run trains on."""

from pathlib import Path

import pytest
import torch
from tests_helpers import make_model, run_cli, tiny
from torch.utils.data import DataLoader, TensorDataset

from cml.config import load_config
from cml.runtime import launch
from cml.strategies._base import MultiLabelStrategy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PASSES = {
    "cml.strategies._l3a": "L3A's statistics",
    "cml.plugins.pseudo.plugin": "pseudo-label calibration",
    "cml.plugins.herding.plugin": "herding",
    "cml.plugins.ewc.plugin": "EWC's Fisher",
}
WORKERS = 3
ONE_PROCESS = ("num_workers", "persistent_workers", "prefetch_factor")


@pytest.fixture
def loaders(monkeypatch):
    """(module, keyword arguments) of every DataLoader that training and the passes build. The
    loaders run in this process (workers are recorded, not started: the machine is small)."""
    calls = []
    for module in ["cml.strategies._loaders", *PASSES]:

        def make(dataset, module=module, **kwargs):
            calls.append((module, kwargs))
            return DataLoader(dataset, **{k: v for k, v in kwargs.items() if k not in ONE_PROCESS})

        monkeypatch.setattr(f"{module}.DataLoader", make)
    return calls


def passes_of(calls, module):
    found = [kwargs for m, kwargs in calls if m == module]
    assert found, f"no {PASSES.get(module, 'training')} loader was built"
    return found


@pytest.mark.parametrize(
    "config, overrides, modules",
    [
        (
            "demo.yaml",
            [
                "strategy.plugins=[herding,ewc,pseudo]",
                "strategy.replay.per_class=2",
                "strategy.pseudo.dynamic=true",
                "strategy.pseudo.threshold=0.8",
            ],
            ["cml.plugins.pseudo.plugin", "cml.plugins.herding.plugin", "cml.plugins.ewc.plugin"],
        ),
        ("demo_l3a.yaml", ["model.options.hidden=32", "strategy.l3a.base_epochs=1"], ["cml.strategies._l3a"]),
    ],
)
def test_every_pass_gets_the_training_loaders_workers(tmp_path, loaders, config, overrides, modules):
    items = tiny() + [
        "scenario.base=3",
        "scenario.increment=3",
        f"data.num_workers={WORKERS}",
        "data.prefetch_factor=4",
        f"data.root={tmp_path / 'data'}",
        *overrides,
    ]
    assert run_cli(CONFIGS / config, tmp_path / "run", items) == 0
    training = passes_of(loaders, "cml.strategies._loaders")
    assert {(a["num_workers"], a["persistent_workers"], a["pin_memory"]) for a in training} == {(WORKERS, True, False)}
    for module in modules:
        for args in passes_of(loaders, module):
            # one pass: its workers end with it; the CPU pins nothing
            assert (args["num_workers"], args["prefetch_factor"], args["persistent_workers"], args["pin_memory"]) == (
                WORKERS,
                4,
                False,
                False,
            ), PASSES[module]


def test_off_the_cpu_training_and_every_pass_pin_memory():
    """`meta` stands in for an accelerator (tests/device_emulation.py): anything but the CPU pins."""
    train_cfg = load_config(CONFIGS / "demo.yaml", tiny()).train
    strategy = MultiLabelStrategy(
        model=make_model("linear", "test_resnet", num_classes=2),
        train_cfg=train_cfg,
        eval_batch_size=4,
        device=torch.device("meta"),
    )
    strategy.is_training = True  # as within `train`, where the training loader is made
    training = strategy._loader_args(num_workers=WORKERS, persistent_workers=True, prefetch_factor=4)
    assert training["pin_memory"] is True and training["persistent_workers"] is True
    one_pass = strategy.pass_loader_args(TensorDataset(torch.zeros(2)))
    assert one_pass == {"num_workers": WORKERS, "pin_memory": True, "persistent_workers": False, "prefetch_factor": 4}


@pytest.mark.parametrize(
    "cores, local_world, expected",
    [(16, None, 8), (16, "2", 7), (16, "8", 1), (2, None, 1), (64, "4", 8), (4, "16", 1)],
)
def test_auto_workers_on_an_accelerator_share_the_cores(monkeypatch, cores, local_world, expected):
    """min(8, cores // processes on this machine - 1), at least 1; the CPU gets none; a number stays."""
    monkeypatch.setattr(launch, "cores", lambda: cores)
    if local_world is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    assert launch.loader_workers("auto", accelerator=True) == expected
    assert launch.loader_workers("auto", accelerator=False) == 0
    assert launch.loader_workers(5, accelerator=True) == launch.loader_workers(5, accelerator=False) == 5
    assert launch.cache_workers("auto") == min(8, cores) and launch.cache_workers(0) == 0


def test_auto_is_the_default_and_a_number_is_still_accepted():
    assert load_config(CONFIGS / "demo.yaml", []).data.num_workers == "auto"
    assert load_config(CONFIGS / "demo.yaml", ["data.num_workers=4"]).data.num_workers == 4
