"""`--resume` judges `model.pretrained` by content (issue 28, items 4 and 8): the same SHA-256 as
the run's results.json record resumes (at the path or moved), other content is refused naming the
file and both digests, and a file that is gone resumes from the checkpoint, which holds the weights.
Before, a resume needed only some file at the path (never read again: any file there resumed)."""

import hashlib
import json
import shutil
from types import SimpleNamespace

import pytest
import timm
import torch
import yaml
from run_helpers import argv, results, signal_once

from cml.commands.cli import main
from cml.config import load_config
from cml.core.errors import UserError
from cml.evaluation.results import MEASURED, MEASURED_RUN
from cml.runtime import checkpoint
from cml.runtime.starting_weights import starting_weights


def write_weights(path, seed: int):
    """A test_resnet backbone's state (timm's layout) from SEED, and its digest as results.json writes it."""
    torch.manual_seed(seed)
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """(folder, weights file, its digest, an uninterrupted run, a run interrupted after step 0)."""
    tmp = tmp_path_factory.mktemp("weights")
    weights = tmp / "w.pth"
    digest = write_weights(weights, 1)
    settings = [f"model.pretrained={weights}"]
    assert main(argv(tmp / "data", tmp / "full", settings)) == 0
    with pytest.MonkeyPatch.context() as patch:  # SIGTERM while step 0 is saved: held until results.json is written
        signal_once(patch, checkpoint, "save", lambda run_dir, step, *rest: step == 0)
        assert main(argv(tmp / "data", tmp / "stopped", settings)) == 143
    return SimpleNamespace(tmp=tmp, weights=weights, digest=digest, full=tmp / "full", stopped=tmp / "stopped")


def outcome(run_dir) -> dict:
    """results.json without what is measured (times, memory): what was learnt."""
    found = {k: v for k, v in results(run_dir).items() if k not in MEASURED_RUN}
    found["steps"] = [{k: v for k, v in step.items() if k not in MEASURED} for step in found["steps"]]
    return found


def resume(started, tmp_path, weights, capsys) -> tuple[int, str]:
    run = tmp_path / "run"
    shutil.copytree(started.stopped, run)
    capsys.readouterr()
    code = main(argv(started.tmp / "data", run, [f"model.pretrained={weights}"], "--resume"))
    return code, capsys.readouterr().err


def test_the_run_records_its_weights_digest(started):
    assert results(started.full)["pretrained"] == started.digest
    assert results(started.stopped)["pretrained"] == started.digest and len(results(started.stopped)["steps"]) == 1


def test_the_same_content_resumes_at_the_path_or_moved(started, tmp_path, capsys):
    code, err = resume(started, tmp_path, started.weights, capsys)
    assert code == 0, err
    assert outcome(tmp_path / "run") == outcome(started.full)
    moved = tmp_path / "elsewhere.pth"
    shutil.copyfile(started.weights, moved)
    shutil.rmtree(tmp_path / "run")
    code, err = resume(started, tmp_path, moved, capsys)
    assert code == 0, err
    assert outcome(tmp_path / "run") == outcome(started.full)


def test_other_content_is_refused_naming_the_file_and_both_digests(started, tmp_path, capsys):
    other = tmp_path / "w.pth"
    other_digest = write_weights(other, 2)
    assert other_digest != started.digest
    code, err = resume(started, tmp_path, other, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: --resume: model.pretrained: {other} holds other weights than")
    assert f"({other_digest} now, {started.digest} in its results.json)" in err
    assert checkpoint.load(tmp_path / "run", 2)["step"] == 0  # nothing trained


def test_a_file_that_is_gone_resumes_from_the_checkpoint(started, tmp_path, capsys):
    code, err = resume(started, tmp_path, tmp_path / "gone.pth", capsys)
    assert code == 0, err
    assert f"note: model.pretrained: {tmp_path / 'gone.pth'} is not there" in err
    assert f"(it started from {started.digest})" in err
    assert outcome(tmp_path / "run") == outcome(started.full)


def test_the_config_check_leaves_a_missing_file_to_the_resume(tmp_path):
    gone = [f"model.pretrained={tmp_path / 'gone.pth'}"]
    with pytest.raises(UserError, match="model.pretrained: file not found"):
        load_config(None, gone)
    assert load_config(None, gone, resume=True).model.pretrained == str(tmp_path / "gone.pth")


def test_starting_weights_builds_without_a_file_that_is_gone_only_on_a_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"pretrained": "sha256:0123456789abcdef"}))
    gone = str(tmp_path / "gone.pth")
    assert starting_weights(gone, run, resume=True) == (False, "sha256:0123456789abcdef")
    with pytest.raises(UserError, match="gone.pth: cannot read"):
        starting_weights(gone, run, resume=False)
    there = tmp_path / "w.pth"
    there.write_bytes(b"weights")
    digest = "sha256:" + hashlib.sha256(b"weights").hexdigest()[:16]
    assert starting_weights(str(there), run, resume=True) == (str(there), digest)
    assert starting_weights(True, run, resume=True) == (False, True)  # the checkpoint holds timm's weights
    assert starting_weights(True, run, resume=False) == (True, True)


def test_a_resume_of_timms_weights_does_not_ask_the_hub(started, tmp_path, monkeypatch):
    """`model.pretrained: true`: the checkpoint holds every weight, so a resume builds the model
    without timm's download (it works offline) and continues the run exactly."""
    run = tmp_path / "run"
    shutil.copytree(started.stopped, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["model"]["pretrained"] = True  # as if the run had started from timm's weights
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("no network")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    assert main(argv(started.tmp / "data", run, ["model.pretrained=true"], "--resume")) == 0
    got, expected = outcome(run), outcome(started.full)
    assert got.pop("pretrained") is True and expected.pop("pretrained") == started.digest
    assert got == expected
