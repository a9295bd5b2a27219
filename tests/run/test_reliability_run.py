"""Faults during a run, end to end on tiny configs: a non-finite loss, two processes on one run
directory, SIGTERM at several points. Each test checks the exit code, the one-line message and that
completed work is intact (the first completed steps equal those of an undisturbed run)."""

import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading

import pytest
import torch
from run_helpers import DEMO, ROOT, TWO_STEPS, argv, leftovers, poison_loss, results, saved_step, signal_once

from cml.commands.cli import main
from cml.core.errors import UserError
from cml.runtime import signals
from cml.runtime.lock import LOCK_FILE, RunLock
from cml.strategies._base import MultiLabelStrategy

# --------------------------------------------------------------------------- numerics


def test_nonfinite_loss_stops_naming_the_batch(reference, tmp_path, monkeypatch, capsys):
    data, ref = reference
    poison_loss(monkeypatch, {(1, 1)})
    out = tmp_path / "run"
    assert main(argv(data, out)) == 3
    err = capsys.readouterr().err
    n = math.ceil(results(ref)["steps"][1]["n_train"] / 16)
    assert err == (
        f"error: step 1, epoch 1/1, batch 2/{n}: the loss is nan; training stopped (train.nonfinite: "
        "stop); lower train.lr, or set train.nonfinite=skip to skip such batches; the completed steps "
        f"are saved in {out}\n"
    )
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
    assert capsys.readouterr().err.startswith(
        f"error: step 0, epoch 1/1, batch {n}/{n}: the weights became "
        "non-finite after this batch's update; training stopped"
    )


def test_skip_policies_for_nonfinite_batches_and_bad_images(tmp_path, monkeypatch, capsys):
    from cml.config import load_config
    from cml.core.registry import DATASETS
    from cml.datasets.synthetic import dataset_folder
    from cml.protocols.split import class_order, reorder

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
        assert s["n_train"] == int((ordered.train.labels[:, 3 * t : 3 * t + 3].any(1) & good).sum())


# --------------------------------------------------------------------------- one run per directory


def test_lock_names_the_holder_and_is_stale_once_it_is_gone(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from cml.runtime.lock import RunLock; RunLock(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(
            UserError,
            match=rf"^--out: {tmp_path} is in use by another cml run "
            rf"\(pid {holder.pid} on .+\); wait for it to end",
        ):
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "cml", *argv(data, out)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(300, proc.kill)  # a hung child fails the test instead of hanging it
    watchdog.start()
    try:
        assert proc.stdout.readline().startswith("synthetic: 6 classes, 2 steps")  # holds the lock
        for extra in ((), ("--resume",)):
            assert main(argv(data, out, (), *extra)) == 2
            err = capsys.readouterr().err
            assert err == (
                f"error: --out: {out} is in use by another cml run (pid {proc.pid} on "
                f"{socket.gethostname()}); wait for it to end, or choose another directory\n"
            )
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
    assert err.count("\n") == 1 and signal.getsignal(signal.SIGTERM) is not signals._handler  # restored
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
