"""Mixed precision on the CPU: CPU autocast in bf16/fp16 and torch's GradScaler("cpu") run the code
that CUDA runs (`AUTOCAST_DEVICES` widened to the CPU), end to end on the demo; inf gradients are
injected to test the skipped-update accounting."""

import json

import pytest
import torch
from tests_helpers import interrupt_after_step, run_cli, tiny

from cml.evaluation.results import reproducible
from cml.strategies import _precision
from cml.strategies._base import MultiLabelStrategy
from cml.strategies._nonfinite import PERSISTENT_SKIPS

DEMO = "configs/demo.yaml"


@pytest.fixture
def cpu_amp(monkeypatch):
    monkeypatch.setattr(_precision, "AUTOCAST_DEVICES", ("cuda", "cpu"))


def _overrides(tmp_path, *extra) -> list[str]:
    return tiny() + [f"data.root={tmp_path.parent / 'data'}", "scenario.base=3", "scenario.increment=3", *extra]


def _results(out) -> dict:
    return reproducible(json.loads((out / "results.json").read_text()))  # without times and memory


def _inject_inf_gradients(monkeypatch, batches=None) -> None:
    """After each backward (or those at (step, batch) in `batches`) one gradient becomes inf, with
    the loss finite: only the scaler can see it."""
    real = MultiLabelStrategy.backward

    def backward(self):
        real(self)
        if batches is None or (self.experience.step, self.clock.train_epoch_iterations) in batches:
            next(p for p in self.model.parameters() if p.grad is not None).grad.fill_(float("inf"))

    monkeypatch.setattr(MultiLabelStrategy, "backward", backward)


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32") / "run"
    assert run_cli(DEMO, out, _overrides(out)) == 0
    return _results(out)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_end_to_end_on_the_demo(amp, cpu_amp, fp32_run, tmp_path):
    assert run_cli(DEMO, tmp_path / amp, _overrides(tmp_path, f"train.amp={amp}")) == 0
    fp32, mixed = fp32_run, _results(tmp_path / amp)
    assert all(0 < s["map"] <= 100 for s in mixed["steps"])
    assert mixed["avg_map"] != fp32["avg_map"]  # autocast did run
    assert abs(mixed["avg_map"] - fp32["avg_map"]) < 10
    if amp == "bf16":  # no scaler: nothing skipped
        assert [s["skipped_updates"] for s in mixed["steps"]] == [0, 0]


def test_inf_gradients_on_every_batch_are_skipped_updates_counted_per_step(cpu_amp, tmp_path, monkeypatch):
    """train.nonfinite=skip: every update is skipped, and results say so (the loss stays finite, so
    the loss guard sees nothing; before, the run 'finished' with 0 updates and nothing counted)."""
    _inject_inf_gradients(monkeypatch)
    overrides = _overrides(tmp_path, "train.amp=fp16", "train.nonfinite=skip", "train.batch_size=8")
    assert run_cli(DEMO, tmp_path / "run", overrides) == 0
    steps = _results(tmp_path / "run")["steps"]
    assert [s["skipped_updates"] for s in steps] == [-(-s["n_trained"] // 8) for s in steps]  # every batch
    assert [s["skipped_batches"] for s in steps] == [0, 0]


def test_persistent_skipped_updates_stop_the_run(cpu_amp, tmp_path, monkeypatch, capsys):
    """Under train.nonfinite=stop (the default); with the limit lowered from PERSISTENT_SKIPS to 3
    so that one short epoch reaches it."""
    from cml.strategies import _nonfinite

    assert PERSISTENT_SKIPS == 20
    monkeypatch.setattr(_nonfinite, "PERSISTENT_SKIPS", 3)
    _inject_inf_gradients(monkeypatch)
    assert run_cli(DEMO, tmp_path / "run", _overrides(tmp_path, "train.amp=fp16", "train.batch_size=8")) == 3
    assert "step 0, epoch 1/1, batch 3/5: fp16's gradient scaler skipped 3 updates in a row" in capsys.readouterr().err


def test_the_scaler_state_is_checkpointed_and_a_resume_continues_it(cpu_amp, tmp_path, monkeypatch):
    """Three skipped updates in step 0 leave the scale at 65536 / 8 (and any natural overflow of the
    tiny model lowers it further); the resumed run continues at that scale and equals the
    uninterrupted one."""
    _inject_inf_gradients(monkeypatch, {(0, 0), (0, 1), (0, 2)})
    overrides = _overrides(tmp_path, "train.amp=fp16")
    assert run_cli(DEMO, tmp_path / "full", overrides) == 0
    real_save = interrupt_after_step(monkeypatch, 0)
    assert run_cli(DEMO, tmp_path / "resumed", overrides) == 130
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["strategy"]["scaler"]
    assert saved["scale"] <= 65536 / 8 and saved["_growth_tracker"] >= 0
    monkeypatch.setattr("cml.runtime.checkpoint.save", real_save)
    assert run_cli(DEMO, tmp_path / "resumed", overrides, "--resume") == 0
    full, resumed = (
        torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["strategy"]["scaler"] for d in ("full", "resumed")
    )
    assert resumed == full
    assert _results(tmp_path / "resumed")["steps"] == _results(tmp_path / "full")["steps"]
    assert _results(tmp_path / "full")["steps"][0]["skipped_updates"] >= 3


def test_fisher_is_computed_in_fp32_under_fp16(cpu_amp, tmp_path):
    """Squared fp16 gradients without loss scaling underflow: the Fisher pass runs without autocast,
    so it equals the fp32 one exactly."""
    from avalanche.training.plugins import EvaluationPlugin

    from cml.config import load_config
    from cml.core.registry import DATASETS
    from cml.models.linear.model import LinearModel
    from cml.plugins.ewc.plugin import empirical_fisher
    from cml.scenarios.builder import build_scenario

    fishers = []
    for amp in ("none", "fp16"):
        cfg = load_config(None, _overrides(tmp_path, f"train.amp={amp}"))
        scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))
        torch.manual_seed(0)
        model = LinearModel("test_resnet", num_classes=3)
        strategy = MultiLabelStrategy(
            model=model, train_cfg=cfg.train, eval_batch_size=32, device="cpu", evaluator=EvaluationPlugin(loggers=[])
        )
        assert strategy.precision.dtype == (torch.float16 if amp == "fp16" else None)
        fishers.append(empirical_fisher(strategy, scenario.benchmark.train_stream[0].dataset))
    assert fishers[0].keys() == fishers[1].keys()
    assert all(torch.equal(fishers[0][n], fishers[1][n]) for n in fishers[0])
    assert any(bool((f > 0).any()) for f in fishers[0].values())
