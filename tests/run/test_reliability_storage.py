"""Faults around a run's files, end to end on tiny configs: a full disk, unwritable places, bad
checkpoints. Each test checks the exit code, the one-line message and that completed work is intact."""

import os

import pytest
import torch
from run_helpers import argv, leftovers, results, saved_step

from cml.commands.cli import main
from cml.core.errors import UserError
from cml.runtime import checkpoint

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
    strategy = SimpleNamespace(
        model=model,
        core_model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scheduler=None,
        checkpoint_state=lambda: {"previous_model": previous, "plugins": {}},
        clock=SimpleNamespace(**dict.fromkeys(checkpoint.CLOCK, 0)),
    )
    real = checkpoint.shutil.disk_usage
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: real(p)._replace(free=5 << 20))
    with pytest.raises(
        UserError,
        match=rf"^{tmp_path}/checkpoint.pt: the checkpoint of step 0 needs 8\.7 MiB but "
        rf"{tmp_path} has 5\.0 MiB free \(No space left on device\)",
    ):
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
    assert (
        capsys.readouterr().err
        == f"error: --out: {tmp_path / 'f'} is a file; expected a directory (new or holding a run)\n"
    )
    assert main(argv(data, tmp_path / "f" / "run")) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'f' / 'run'}: cannot create the run directory (Not a directory [ENOTDIR])\n"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories (permissions are not checked)")
def test_read_only_directory(reference, tmp_path, capsys):
    data, _ = reference
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    assert main(argv(data, locked / "run")) == 2
    assert capsys.readouterr().err == (
        f"error: {locked / 'run'}: cannot create the run directory (Permission denied [EACCES])\n"
    )


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_problems_are_named(tmp_path):
    state = {
        "version": checkpoint.VERSION,
        "step": 0,
        "model": {},
        "optimizer": {},
        "scheduler": None,
        "rng": {"torch": 0, "python": 0, "numpy": 0},
        "steps": [{k: None for k in checkpoint.RECORD_KEYS}],
        "strategy": {"previous_model": None, "plugins": {}},
    }
    state["steps"][0]["step_map"] = [1.0]
    cases = [
        ({}, None),
        ({"version": 7}, "unknown checkpoint format version 7; this cml reads version 1"),
        ({"version": None}, "unknown checkpoint format version None; this cml reads version 1"),
        ({"strategy": {"plugins": {}}}, "'strategy' should hold 'previous_model' and 'plugins'"),
        ({"step": 5}, "step 5 is not a step of this run (0 to 1)"),
        ({"steps": []}, "'steps' should hold the results of the 1 completed steps"),
    ]
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
        "model: another run's checkpoint?\n"
    )
    assert results(out) == results(ref)  # untouched
