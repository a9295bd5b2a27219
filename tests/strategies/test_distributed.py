"""torchrun: 2 processes (gloo, CPU) give the one-process results, and write one set of outputs.

The backbone is test_convnext (LayerNorm): per-rank BatchNorm statistics, the one thing that
differs between 1 and N processes on the CPU (no SyncBatchNorm there, docs/scaling.md), is out
of the comparison, so the results must agree to float rounding: TOLERANCE, in points of AP.
Flips are off where 1 and 2 processes are compared: each rank draws them from its own random stream
(a resume with flips on is compared with the uninterrupted 2-process run).
"""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests_helpers import tiny

from cml.config import load_config
from cml.core.registry import DATASETS
from cml.evaluation.results import reproducible
from cml.runtime import distributed
from cml.strategies._batches import StepBatches

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
TOLERANCE = 1e-4  # AP points; measured: 0 (bit-identical) on the CPU
COMMON = tiny() + ["model.backbone=test_convnext", "train.hflip=false", "train.batch_size=8"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out: Path, overrides: list[str], processes: int, *extra: str, pythonpath: Path = ROOT) -> subprocess.Popen:
    launcher = (
        [sys.executable]
        if processes == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_port",
            str(_free_port()),
        ]
    )
    args = launcher + ["-m", "cml", "run", DEMO, "--out", str(out), *extra]
    for item in overrides:
        args += ["--set", item]
    path = os.pathsep.join(dict.fromkeys([str(ROOT), str(pythonpath)]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-3000:]
    return output


def _numbers(tree, path=""):
    """(path, value) for every number of a results.json, NaN left out."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _numbers(value, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool) and not math.isnan(tree):
        yield path, tree


def _assert_same_results(one: Path, two: Path) -> None:
    a, b = (reproducible(json.loads((d / "results.json").read_text())) for d in (one, two))
    assert [s["classes"] for s in a["steps"]] == [s["classes"] for s in b["steps"]]
    pa, pb = dict(_numbers(a)), dict(_numbers(b))
    assert pa.keys() == pb.keys()
    for key, value in pa.items():
        assert pb[key] == pytest.approx(value, abs=TOLERANCE), key


def _generate(overrides: list[str]) -> None:
    """The dataset, written once before the concurrent runs read it."""
    DATASETS.get("synthetic").build(load_config(DEMO, overrides, allow_imports=True).data)


def _overrides(tmp_path, *extra: str) -> list[str]:
    return COMMON + list(extra) + [f"data.root={tmp_path / 'data'}"]


def _outputs_of_one_run(run_dir: Path, output: str, starts: int = 1) -> None:
    """Rank 0 alone prints and writes: one table, one set of files, nothing left behind, one
    TensorBoard event file per start of the run."""
    assert output.count("Avg mAP") == 1 and "2 processes" in output
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.pt",
        "config.yaml",
        "metrics.csv",
        "model.pt",
        "results.json",
        "tb",
    ]
    assert len(list((run_dir / "tb").iterdir())) == starts


def _one_and_two_processes(tmp_path, overrides: list[str], pythonpath: Path = ROOT, extra=()) -> tuple[Path, Path]:
    """The same run in one process and, at the same time, under torchrun with two; the two-process
    run's outputs are one run's. Returns both run directories."""
    _generate(overrides)
    one, two = tmp_path / "one", tmp_path / "two"
    runs = [_start(d, overrides, n, *extra, pythonpath=pythonpath) for d, n in ((one, 1), (two, 2))]
    _, output = (_finish(p) for p in runs)
    _outputs_of_one_run(two, output)
    return one, two


@pytest.mark.slow  # one more 2-process run each (about 20 s); `pytest -m slow`
def test_online_replay_lwf_ewc_match_one_process(tmp_path):
    overrides = _overrides(tmp_path, "train.online=true", "strategy.replay.size=16", "strategy.plugins=[prs,lwf,ewc]")
    one, two = _one_and_two_processes(tmp_path, overrides)
    _assert_same_results(one, two)


@pytest.mark.slow  # one more 2-process run each (about 20 s); `pytest -m slow`
def test_krt_token_distillation_and_dynamic_pseudo_labels_match_one_process(tmp_path):
    """The krt model's frozen tokens and heads under DDP, tdl, and the pseudo-label threshold
    calibrated on scores gathered from both ranks."""
    overrides = _overrides(
        tmp_path,
        "model.name=krt",
        # torch's start: the authors' N(0, 0.01) block leaves the tiny run's scores nearly tied, so the
        # all-reduce's summation order alone moves an AP past 1e-4 (DDP gives both ranks rank 0's weights)
        "model.options={embed_dim: 16, heads: 2, init: torch}",
        "strategy.plugins=[tdl,pseudo]",
        "strategy.pseudo.dynamic=true",
        "strategy.pseudo.threshold=0.8",
    )
    one, two = _one_and_two_processes(tmp_path, overrides)
    _assert_same_results(one, two)
    thresholds = [s["pseudo_threshold"] for s in json.loads((two / "results.json").read_text())["steps"]]
    assert thresholds[0] is None and all(t is not None for t in thresholds[1:])


@pytest.mark.slow  # one more 2-process run each (about 20 s); `pytest -m slow`
def test_multilane_matches_one_process(tmp_path):
    """MULTI-LANE on timm's test ViT (LayerNorm): one lane per step, the old lanes frozen under DDP."""
    overrides = _overrides(
        tmp_path,
        "model.name=multilane",
        "model.backbone=test_vit",
        "model.options={patch_size: 8, selectors: 2, prompts: 2, prompt_layers: 1}",
    )
    one, two = _one_and_two_processes(tmp_path, overrides)
    _assert_same_results(one, two)


@pytest.mark.slow  # one more 2-process run each (about 20 s); `pytest -m slow`
def test_csc_label_graph_is_counted_from_the_whole_step(tmp_path):
    """CSC's co-occurrence statistics are counted from the step's whole training set on every rank,
    so they equal one process's exactly. The results themselves differ a little: CSC's graph
    convolution has a BatchNorm1d, which on the CPU normalises over each rank's slice (no
    SyncBatchNorm there; on CUDA `train.sync_batchnorm` makes it the global batch)."""
    overrides = _overrides(
        tmp_path,
        "model.name=csc",
        "model.options.embed_dim=16",
        "model.options.init=prior",  # logit(0.05) biases: with the authors' start per-rank BatchNorm moves AP past 5
        "strategy.plugins=[csc]",
        "train.loss=multilabel_soft_margin",
    )
    one, two = _one_and_two_processes(tmp_path, overrides)
    states = [torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (one, two)]
    for key in ("cooccurrence.counts", "cooccurrence.joint"):
        assert torch.equal(states[0][key], states[1][key]) and states[0][key].sum() > 0, key
    assert states[0]["cooccurrence.counts"].shape == (6,)
    maps = [json.loads((d / "results.json").read_text())["map_matrix"] for d in (one, two)]
    for a, b in zip(sum(maps[0], []), sum(maps[1], [])):
        assert (a is None and b is None) or abs(a - b) < 5, maps


def test_killed_and_resumed_under_torchrun(tmp_path):
    """Epoch mode (the last incomplete batch split unevenly), herding and pseudo-labels; the
    2-process run is stopped by SIGTERM after a step and resumed under torchrun: every rank loads
    the checkpoint, and the results are the uninterrupted one-process run's."""
    overrides = _overrides(
        tmp_path, "train.epochs=2", "strategy.replay.per_class=2", "strategy.plugins=[herding,pseudo]"
    )
    _generate(overrides)
    one, two = tmp_path / "one", tmp_path / "two"
    reference, stopped = _start(one, overrides, 1), _start(two, overrides, 2)
    while not (two / "checkpoint.pt").exists() and stopped.poll() is None:
        time.sleep(0.05)
    stopped.send_signal(signal.SIGTERM)  # torchrun passes it to its workers
    output = stopped.communicate(timeout=120)[0]
    _finish(reference)
    steps_done = len(json.loads((two / "results.json").read_text())["steps"])
    assert stopped.returncode != 0 and steps_done < 3, output[-3000:]
    output = _finish(_start(two, overrides, 2, "--resume"))
    assert f"after step {steps_done - 1}" in output
    _assert_same_results(one, two)
    _outputs_of_one_run(two, output, starts=2)


def test_step_batches_cut_the_one_process_batches(monkeypatch):
    """The ranks' slices of every batch, in rank order, are the one-process batch; the last
    incomplete batch is kept only when every rank gets 2 images of it."""
    one = list(StepBatches(23, 8, (0, 1), drop_incomplete=False))
    assert [len(b) for b in one] == [8, 8, 7] and sorted(sum(one, [])) == list(range(23))
    assert one != list(StepBatches(23, 8, (0, 2), drop_incomplete=False))  # another step, another order
    for world, expected in ((2, [8, 8, 7]), (4, [8, 8])):
        monkeypatch.setattr(distributed, "world", lambda w=world: w)
        ranks = []
        for r in range(world):
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            ranks.append(list(StepBatches(23, 8, (0, 1), drop_incomplete=False)))
        joined = [sum((ranks[r][b] for r in range(world)), []) for b in range(len(ranks[0]))]
        assert [len(b) for b in joined] == expected and joined == one[: len(expected)]
    assert len(StepBatches(23, 8, (0, 1), drop_incomplete=True)) == 2


def test_host_tensors_are_gathered_over_the_host_group_under_nccl(monkeypatch):
    """Under nccl, the replay plugin's rows and labels (CPU tensors from the loader) go through the
    gloo group: no copy to the GPU and back, so the host does not wait for the GPU each batch."""
    import torch.distributed as dist

    from cml.runtime import distributed

    host_group, calls = object(), []

    def all_gather(parts, tensor, group=None):
        calls.append((group, tensor.device.type))
        for part in parts:
            part.copy_(tensor)

    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "world", lambda: 2)
    monkeypatch.setattr(distributed, "_host_group", host_group)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(dist, "all_gather", all_gather)
    rows = torch.tensor([[3.0, 1.0], [5.0, 0.0]])
    assert torch.equal(distributed.all_gather_cat(rows), torch.cat([rows, rows]))
    assert calls == [(host_group, "cpu"), (host_group, "cpu")]


def test_a_contributed_plugin_reading_strategy_model_acts_under_torchrun(tmp_path, monkeypatch):
    """tests/core/external/ext_l2.py matches parameters by name through `strategy.model`: under 2
    processes it acts as in one (equal results), and it acts at all (unlike finetune). The
    consent to its import, `--allow-imports`, reaches every rank (each parses the same arguments)."""
    external = ROOT / "tests" / "core" / "external"
    monkeypatch.syspath_prepend(str(external))  # the dataset is written here, through the config
    overrides = _overrides(tmp_path, "imports=[ext_l2]", "strategy.plugins=[ext_l2]")
    one, two = _one_and_two_processes(tmp_path, overrides, pythonpath=external, extra=("--allow-imports",))
    _assert_same_results(one, two)
    finetune = tmp_path / "finetune"
    _finish(_start(finetune, _overrides(tmp_path), 1))
    last = [json.loads((d / "results.json").read_text())["steps"][-1]["map"] for d in (two, finetune)]
    assert last[0] != last[1]


def test_a_torchrun_resume_with_augmentation_is_the_same_run(tmp_path):
    """Flips, cutout and RandAugment on: each rank draws its own, so the 2-process run is compared
    with itself, stopped by SIGTERM after a step and resumed: every rank continues from its own
    saved RNG state (before, from rank 0's, and the resumed run drew other flips on rank 1: issue 28)."""
    augment = ("train.hflip=true", "train.cutout=0.5", "train.randaugment=true")
    overrides = _overrides(tmp_path, *augment, "strategy.replay.per_class=2", "strategy.plugins=[herding]")
    _generate(overrides)
    full, two = tmp_path / "full", tmp_path / "two"
    reference, stopped = _start(full, overrides, 2), _start(two, overrides, 2)
    while not (two / "checkpoint.pt").exists() and stopped.poll() is None:
        time.sleep(0.05)
    stopped.send_signal(signal.SIGTERM)
    stopped.communicate(timeout=120)
    _finish(reference)
    assert len(json.loads((two / "results.json").read_text())["steps"]) < 3
    _finish(_start(two, overrides, 2, "--resume"))
    _assert_same_results(full, two)
    saved = torch.load(two / "checkpoint.pt", weights_only=False)["rank_rng"]
    assert len(saved) == 2 and not torch.equal(saved[0]["torch"], saved[1]["torch"])
