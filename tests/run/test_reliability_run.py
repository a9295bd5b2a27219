"""Faults during a run, end to end on tiny configs: a non-finite loss, two processes on one run
directory, SIGTERM at several points, a full disk, unwritable places, bad checkpoints and bad
images. Each test checks the exit code, the one-line message and that completed work is intact
(the first completed steps equal those of an undisturbed run)."""

import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from cml import checkpoint, rundir
from cml.cli import main
from cml.rundir import LOCK_FILE, RunLock
from cml.errors import UserError
from cml.strategies._base import MultiLabelStrategy
from tests_helpers import tiny

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
TWO_STEPS = tiny() + ["scenario.base=3", "scenario.increment=3"]  # 6 classes in 2 steps


def argv(data: Path, out: Path, overrides=(), *extra) -> list[str]:
    words = ["run", DEMO, "--out", str(out)]
    for item in [*TWO_STEPS, *overrides, f"data.root={data}"]:
        words += ["--set", item]
    return words + list(extra)


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def saved_step(out: Path) -> int:
    return checkpoint.load(out, 2)["step"]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_FILE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(data folder, an undisturbed run of TWO_STEPS)."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(argv(tmp / "data", tmp / "run")) == 0
    return tmp / "data", tmp / "run"


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


# --------------------------------------------------------------------------- numerics

def test_nonfinite_loss_stops_naming_the_batch(reference, tmp_path, monkeypatch, capsys):
    data, ref = reference
    poison_loss(monkeypatch, {(1, 1)})
    out = tmp_path / "run"
    assert main(argv(data, out)) == 3
    err = capsys.readouterr().err
    n = math.ceil(results(ref)["steps"][1]["n_train"] / 16)
    assert err == (f"error: step 1, epoch 1/1, batch 2/{n}: the loss is nan; training stopped (train.nonfinite: "
                   "stop); lower train.lr, or set train.nonfinite=skip to skip such batches; the completed steps "
                   f"are saved in {out}\n")
    assert saved_step(out) == 0 and results(out)["steps"] == results(ref)["steps"][:1]
    assert leftovers(out) == []


def test_diverging_learning_rate_stops(reference, tmp_path, capsys):
    data, _ = reference
    out = tmp_path / "run"
    assert main(argv(data, out, ["train.optimizer=sgd", "train.lr=1e30"])) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: step 0, epoch 1/1, batch ") and err.count("\n") == 1
    assert "non-finite" in err or "the loss is" in err
    assert not (out / "checkpoint.pt").exists() and leftovers(out) == []


def test_weights_made_nonfinite_by_the_last_update(reference, tmp_path, monkeypatch, capsys):
    data, ref = reference
    real = MultiLabelStrategy.optimizer_step

    def step(self):
        real(self)
        if self.clock.train_epoch_iterations == len(self.dataloader) - 1:  # the epoch's last batch
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")

    monkeypatch.setattr(MultiLabelStrategy, "optimizer_step", step)
    assert main(argv(data, tmp_path / "run")) == 3
    n = math.ceil(results(ref)["steps"][0]["n_train"] / 16)
    assert capsys.readouterr().err.startswith(f"error: step 0, epoch 1/1, batch {n}/{n}: the weights became "
                                              "non-finite after this batch's update; training stopped")


def test_skip_policies_for_nonfinite_batches_and_bad_images(tmp_path, monkeypatch, capsys):
    from cml.config import load_config
    from cml.registry import DATASETS
    from cml.datasets.synthetic import dataset_folder
    from cml.scenarios.split import class_order, reorder

    cfg = load_config(DEMO, [*TWO_STEPS, f"data.root={tmp_path / 'data'}"])
    data = DATASETS.get("synthetic").build(cfg.data)
    jpegs = sorted((dataset_folder(cfg.data) / "train").glob("*.jpg"))
    jpegs[0].write_bytes(b"")
    jpegs[1].write_bytes(jpegs[1].read_bytes()[:300])  # truncated
    poison_loss(monkeypatch, {(0, 0), (1, 1)})
    out = tmp_path / "run"
    assert main(argv(tmp_path / "data", out, ["train.nonfinite=skip"])) == 0
    assert "left out 2 unreadable images (data.bad_images: skip)" in capsys.readouterr().out
    summary = results(out)
    assert summary["skipped"] == {"train_bad_images": 2, "train_nonfinite_batches": 2}
    assert [s["skipped_batches"] for s in summary["steps"]] == [1, 1]
    # the steps were made from the checked data: the damaged images are in no step
    ordered = reorder(data, class_order(data.class_names, "alphabetical", 0))
    good = [p not in {str(jpegs[0]), str(jpegs[1])} for p in ordered.train.paths]
    for t, s in enumerate(summary["steps"]):
        assert s["n_train"] == int((ordered.train.labels[:, 3 * t:3 * t + 3].any(1) & good).sum())


# --------------------------------------------------------------------------- one run per directory

def test_lock_names_the_holder_and_is_stale_once_it_is_gone(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cml.rundir import RunLock; RunLock(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError, match=rf"^--out: {tmp_path} is in use by another cml run "
                                            rf"\(pid {holder.pid} on .+\); wait for it to end"):
            RunLock(tmp_path)
    finally:
        holder.kill()  # SIGKILL: no clean-up in the holder
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # left behind, but no longer held
    lock = RunLock(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_second_process_and_sigterm_then_resume(reference, tmp_path, capsys):
    """A real `python -m cml run`: a second run and a --resume on its directory are refused with its
    pid; SIGTERM then stops it with exit 143 and the resume command, which completes the run."""
    data, ref = reference
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cml", *argv(data, out)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(300, proc.kill)  # a hung child fails the test instead of hanging it
    watchdog.start()
    try:
        assert proc.stdout.readline().startswith("synthetic: 6 classes, 2 steps")  # holds the lock
        for extra in ((), ("--resume",)):
            assert main(argv(data, out, (), *extra)) == 2
            err = capsys.readouterr().err
            assert err == (f"error: --out: {out} is in use by another cml run (pid {proc.pid} on "
                           f"{socket.gethostname()}); wait for it to end, or choose another directory\n")
        line = proc.stdout.readline()
        while line and not line.startswith("   0 "):  # the row of step 0: it is saved
            line = proc.stdout.readline()
        assert line, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 143, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith(f"interrupted by SIGTERM; the completed steps are saved in {out}; continue with: ")
    done = saved_step(out)
    assert len(results(out)["steps"]) == done + 1 and leftovers(out) == []
    command = shlex.split(message.split("continue with: ")[1])
    assert command[:3] == ["python", "-m", "cml"] and "--resume" in command
    assert main(command[3:]) == 0
    assert results(out) == results(ref)


def test_sigterm_during_training_then_resume_equals_an_undisturbed_run(reference, tmp_path, monkeypatch, capsys):
    data, ref = reference
    out = tmp_path / "run"
    signal_once(monkeypatch, MultiLabelStrategy, "backward", lambda self: self.experience.step == 1)
    assert main(argv(data, out)) == 143
    err = capsys.readouterr().err
    assert err.startswith(f"interrupted by SIGTERM; the completed steps are saved in {out}; continue with: ")
    assert err.count("\n") == 1 and signal.getsignal(signal.SIGTERM) is not rundir._handler  # restored
    assert saved_step(out) == 0 and results(out)["steps"] == results(ref)["steps"][:1] and leftovers(out) == []
    assert main(shlex.split(err.split("continue with: ")[1])[3:]) == 0
    assert results(out) == results(ref)


def test_sigterm_during_a_checkpoint_write_lets_it_complete(reference, tmp_path, monkeypatch, capsys):
    data, ref = reference
    out = tmp_path / "run"
    signal_once(monkeypatch, torch, "save", lambda state, fh: True)
    assert main(argv(data, out)) == 143
    assert "interrupted by SIGTERM; the completed steps are saved" in capsys.readouterr().err
    assert saved_step(out) == 0 and results(out)["steps"] == results(ref)["steps"][:1] and leftovers(out) == []


def test_sigterm_before_any_step(reference, tmp_path, monkeypatch, capsys):
    data, _ = reference
    out = tmp_path / "run"
    signal_once(monkeypatch, MultiLabelStrategy, "backward", lambda self: True)
    assert main(argv(data, out)) == 143
    assert capsys.readouterr().err == "interrupted by SIGTERM; no step was completed, nothing to resume\n"
    assert not (out / "checkpoint.pt").exists() and leftovers(out) == []


# --------------------------------------------------------------------------- storage

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


@needs_dev_full
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(reference, tmp_path, monkeypatch, capsys):
    """The temporary checkpoint of step 1 is a link to /dev/full: every write gets ENOSPC."""
    data, ref = reference
    out = tmp_path / "run"
    real = checkpoint.save

    def save(run_dir, step, *args):
        if step == 1:
            (run_dir / "checkpoint.pt.tmp").symlink_to("/dev/full")
        real(run_dir, step, *args)

    monkeypatch.setattr(checkpoint, "save", save)
    assert main(argv(data, out)) == 2
    assert capsys.readouterr().err == f"error: {out}/checkpoint.pt: cannot write (No space left on device [ENOSPC])\n"
    assert saved_step(out) == 0 and results(out)["steps"] == results(ref)["steps"][:1] and leftovers(out) == []


@needs_dev_full
def test_disk_full_for_results_then_resume_rewrites_them(reference, tmp_path, capsys):
    data, ref = reference
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json.tmp").symlink_to("/dev/full")
    assert main(argv(data, out)) == 2
    assert capsys.readouterr().err == f"error: {out}/results.json: cannot write (No space left on device [ENOSPC])\n"
    assert saved_step(out) == 0 and not (out / "results.json").exists() and leftovers(out) == []
    assert main(argv(data, out, (), "--resume")) == 0
    assert results(out) == results(ref)


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    import copy
    from types import SimpleNamespace

    model = torch.nn.Linear(1000, 1000)  # 4,004,000 bytes, and as much for the previous model
    previous = copy.deepcopy(model).state_dict()
    strategy = SimpleNamespace(model=model, core_model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                               scheduler=None,
                               checkpoint_state=lambda: {"previous_model": previous, "plugins": {}})
    real = checkpoint.shutil.disk_usage
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: real(p)._replace(free=5 << 20))
    with pytest.raises(UserError, match=rf"^{tmp_path}/checkpoint.pt: the checkpoint of step 0 needs 8\.7 MiB but "
                                        rf"{tmp_path} has 5\.0 MiB free \(No space left on device\)"):
        checkpoint.save(tmp_path, 0, strategy, [])
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", real)
    checkpoint.save(tmp_path, 0, strategy, [])
    size = (tmp_path / "checkpoint.pt").stat().st_size
    assert 2 * 4_004_000 < size <= checkpoint.stored_bytes(torch.load(tmp_path / "checkpoint.pt")) * 1.01 + (1 << 20)


def test_out_is_a_file_or_under_a_file(reference, tmp_path, capsys):
    data, _ = reference
    (tmp_path / "f").write_text("x")
    assert main(argv(data, tmp_path / "f")) == 2
    assert capsys.readouterr().err == \
        f"error: --out: {tmp_path / 'f'} is a file; expected a directory (new or holding a run)\n"
    assert main(argv(data, tmp_path / "f" / "run")) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'f' / 'run'}: cannot create the run directory "
                                       "(Not a directory [ENOTDIR])\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories (permissions are not checked)")
def test_read_only_directory(reference, tmp_path, capsys):
    data, _ = reference
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    assert main(argv(data, locked / "run")) == 2
    assert capsys.readouterr().err == (f"error: {locked / 'run'}: cannot create the run directory "
                                       "(Permission denied [EACCES])\n")


# --------------------------------------------------------------------------- checkpoints

def test_checkpoint_problems_are_named(tmp_path):
    state = {"version": checkpoint.VERSION, "step": 0, "model": {}, "optimizer": {}, "scheduler": None,
             "rng": {"torch": 0, "python": 0, "numpy": 0}, "steps": [{k: None for k in checkpoint.RECORD_KEYS}],
             "strategy": {"previous_model": None, "plugins": {}}}
    state["steps"][0]["step_map"] = [1.0]
    cases = [({}, None), ({"version": 7}, "unknown checkpoint format version 7; this cml reads version 1"),
             ({"version": None}, "unknown checkpoint format version None; this cml reads version 1"),
             ({"strategy": {"plugins": {}}}, "'strategy' should hold 'previous_model' and 'plugins'"),
             ({"step": 5}, "step 5 is not a step of this run (0 to 1)"),
             ({"steps": []}, "'steps' should hold the results of the 1 completed steps")]
    for change, expected in cases:
        torch.save({**state, **change}, tmp_path / "checkpoint.pt")
        if expected is None:
            assert checkpoint.load(tmp_path, 2)["step"] == 0
            continue
        with pytest.raises(UserError) as info:
            checkpoint.load(tmp_path, 2)
        assert str(info.value) == f"--resume: {tmp_path}/checkpoint.pt: {expected}"
    del state["strategy"]
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(UserError, match=r"checkpoint.pt: missing strategy$"):
        checkpoint.load(tmp_path, 2)
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"checkpoint.pt cannot be read \("):
        checkpoint.load(tmp_path, 2)


def test_checkpoint_of_another_model_is_refused(reference, tmp_path, capsys):
    import shutil

    data, ref = reference
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"]["head.weight"] = torch.zeros(4, 7)
    torch.save(state, out / "checkpoint.pt")
    assert main(argv(data, out, (), "--resume")) == 2
    assert capsys.readouterr().err.endswith(
        "checkpoint.pt: 'model' weight head.weight has shape (4, 7) in the checkpoint but (6, 96) in this run's "
        "model: another run's checkpoint?\n")
    assert results(out) == results(ref)  # untouched
