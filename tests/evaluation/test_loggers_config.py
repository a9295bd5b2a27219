"""`log.loggers` and `log.metrics` from the config: a bad name is one line and exit 2 before torch
is imported; gpu on a CPU run is left out with a warning; cml's CSV continues across a resume, a
step interrupted after its values were written and before its checkpoint written once more in
place of its rows, not beside them."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import tiny

from cml.config import load_config
from cml.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
CHECK = (
    "import sys\nfrom cml.commands.cli import main\nrc = main(['plan', 'configs/demo.yaml', '--set', sys.argv[1]])\n"
    "print('HEAVY', [m for m in ('torch', 'avalanche', 'wandb') if m in sys.modules])\nsys.exit(rc)"
)


@pytest.mark.parametrize(
    "item, message",
    [
        (
            "log.loggers=[tensorbord]",
            "log.loggers: unknown 'tensorbord'; did you mean 'tensorboard'?; "
            "expected any of tensorboard, csv, wandb, interactive",
        ),
        (
            "log.metrics=[ram,gpus]",
            "log.metrics: unknown 'gpus'; did you mean 'gpu'?; expected any of timing, ram, gpu",
        ),
    ],
)
def test_a_bad_name_is_one_line_before_torch(item, message, tmp_path):
    proc = subprocess.run([sys.executable, "-c", CHECK, item], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_a_name_listed_twice_is_refused():
    with pytest.raises(UserError, match=r"log.loggers: 'csv' is listed twice"):
        load_config(None, ["log.loggers=[csv,tensorboard,csv]"])
    assert load_config(None, []).log.loggers == ["tensorboard"] and load_config(None, []).log.metrics == []


def test_gpu_on_the_cpu_is_left_out_with_a_warning():
    import torch

    from cml.evaluation.loggers import build_metrics

    cfg = load_config(None, ["log.metrics=[gpu,timing]"])
    with pytest.warns(UserWarning, match="log.metrics: gpu left out: the run is on cpu"):
        metrics = build_metrics(cfg, torch.device("cpu"))
    assert [str(m) for m in metrics] == ["Time_Epoch", "Time_Exp"]


def rows(out: Path) -> list[dict]:
    with (out / "csv" / "eval.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def keyed(out: Path) -> dict:
    return {(r["step"], r["experience"]): r["map"] for r in rows(out)}


def test_the_csv_continues_after_a_resume(tmp_path, monkeypatch):
    import json

    import cml
    from cml.runtime import checkpoint

    overrides = [*tiny(), "scenario.base=3", "scenario.increment=3", "log.loggers=[csv]", f"data.root={tmp_path}"]
    config, out = ROOT / "configs/demo.yaml", tmp_path / "run"
    real_save = checkpoint.save

    def interrupt_step_1(run_dir, step, *args):
        if step == 1:  # after step 1 was evaluated and its row written, before its checkpoint
            raise KeyboardInterrupt
        real_save(run_dir, step, *args)

    monkeypatch.setattr(checkpoint, "save", interrupt_step_1)
    with pytest.raises(KeyboardInterrupt):
        with cml.Experiment.from_config(config, overrides, out=out, verbose=False) as exp:
            exp.run()
    before = keyed(out)
    assert list(before) == [("0", "0"), ("1", "1")]
    monkeypatch.setattr(checkpoint, "save", real_save)
    with cml.Experiment.from_config(config, overrides, out=out, resume=True, verbose=False) as exp:
        exp.strategy.eval(exp.benchmark.test_stream)  # x: the restored clock's step 0; step 1 not trained
        assert keyed(out) == before  # (0, 0) scored again by the restored model, in place of its row
        exp.run()
    results = json.loads((out / "results.json").read_text())
    assert len(rows(out)) == 2 and keyed(out) == {
        (str(t), str(t)): repr(s["map"]) for t, s in enumerate(results["steps"])
    }


def test_the_gpu_metric_reads_the_runs_gpu_in_nvidia_smi_numbering(monkeypatch):
    """CUDA_VISIBLE_DEVICES=2,0: CUDA's device 0 is nvidia-smi's GPU 2, found by its UUID."""
    import types

    import GPUtil
    import torch

    from cml.evaluation.loggers import smi_index

    uuids = ["aaaa-0", "bbbb-1", "cccc-2"]  # nvidia-smi's order
    visible = [2, 0]
    monkeypatch.setattr(GPUtil, "getGPUs", lambda: [types.SimpleNamespace(uuid=f"GPU-{u}") for u in uuids])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=uuids[visible[i]]))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert smi_index(torch.device("cuda", 0)) == 2
    assert smi_index(torch.device("cuda")) == 0  # the current device, 1 in CUDA's numbering
