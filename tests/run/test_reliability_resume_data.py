"""A resume continues only on the data its checkpoint refers to (issue 17, finding 1): replay
buffers hold training rows and heads hold classes by position, so an image that became unreadable
(every later row shifts) or a renamed class must stop the resume with one line, never train on."""

import json
from pathlib import Path

import numpy as np
import torch
from tests_helpers import interrupt_after_step, tiny

from cml.commands.cli import main
from cml.datasets._types import MultiLabelData, Split
from cml.runtime import checkpoint

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
TWO_STEPS = tiny() + [
    "scenario.base=3",
    "scenario.increment=3",
    "strategy.plugins=[reservoir]",
    "strategy.replay.size=20",
]


def argv(data: Path, out: Path, *extra) -> list[str]:
    words = ["run", DEMO, "--out", str(out)]
    for item in [*TWO_STEPS, f"data.root={data}"]:
        words += ["--set", item]
    return words + list(extra)


def interrupted_run(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(the synthetic dataset's folder, a run stopped after its step 0)."""
    data, out = tmp_path / "data", tmp_path / "run"
    real = interrupt_after_step(monkeypatch, 0)
    assert main(argv(data, out)) == 130
    monkeypatch.setattr(checkpoint, "save", real)
    return next(data.glob("synthetic-*")), out


def test_resume_after_an_image_became_unreadable_is_refused(tmp_path, monkeypatch, capsys):
    folder, out = interrupted_run(tmp_path, monkeypatch)
    images = sorted((folder / "train").glob("*.jpg"))
    images[3].write_bytes(b"")  # unreadable: left out, and every later row shifts
    capsys.readouterr()
    assert main(argv(tmp_path / "data", out, "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(
        f"error: --resume: {out / 'checkpoint.pt'}: the training images differ from those it "
        "was made with: 57 of 60 rows differ (row 3 is "
    )  # rows 3..58 moved, row 59 gone
    assert "1 of its images or their labels are no longer in the data" in err
    assert err.endswith("restore the data it was made with, or start a new run")
    assert checkpoint.load(out, 2)["step"] == 0  # step 0 kept


def test_resume_after_a_class_rename_is_refused(tmp_path, monkeypatch, capsys):
    folder, out = interrupted_run(tmp_path, monkeypatch)
    for name in ("instances_train.json", "instances_val.json"):
        path = folder / "annotations" / name
        doc = json.loads(path.read_text())
        first = min(doc["categories"], key=lambda c: c["name"])
        old = first["name"]
        first["name"] = old + "x"  # still first in alphabetical order
        path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(argv(tmp_path / "data", out, "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --resume: {out / 'checkpoint.pt'}: class 0 is {old + 'x'!r} now but {old!r} in the "
        "checkpoint (renamed or reordered); restore the data it was made with, or start a new run"
    )


def _data(ids, labels, classes=("a", "b")) -> MultiLabelData:
    split = Split([f"/d/{i}.jpg" for i in ids], np.array(labels, np.uint8), list(ids))
    return MultiLabelData("list", list(classes), split, split)


def test_data_problem_names_the_change():
    saved = checkpoint.data_identity(_data(["x", "y", "z"], [[1, 0], [0, 1], [1, 1]]))
    assert checkpoint.data_problem(saved, _data(["x", "y", "z"], [[1, 0], [0, 1], [1, 1]])) is None
    relabelled = checkpoint.data_problem(saved, _data(["x", "y", "z"], [[1, 0], [1, 1], [1, 1]]))
    assert relabelled.startswith(
        "the training images differ from those it was made with: 1 of 3 rows differ (row 1 is /d/y.jpg (id y) now"
    )
    assert relabelled.endswith(
        "1 of its images or their labels are no longer in the data (unreadable now, removed or relabelled?)"
    )
    shorter = checkpoint.data_problem(saved, _data(["x", "y"], [[1, 0], [0, 1]]))
    assert "1 of 3 rows differ (rows from 2 on are gone)" in shorter
    assert (
        checkpoint.data_problem(saved, _data(["x", "y", "z"], [[1, 0], [0, 1], [1, 1]], ("b", "a")))
        == "class 0 is 'b' now but 'a' in the checkpoint (renamed or reordered)"
    )
    assert (
        checkpoint.data_problem(saved, _data(["x"], [[1, 0, 0]], ("a", "b", "c")))
        == "the data have 3 classes, the checkpoint 2: another dataset?"
    )


def test_old_checkpoint_without_data_identity_is_accepted_with_a_warning(tmp_path, monkeypatch, capsys):
    _, out = interrupted_run(tmp_path, monkeypatch)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["data"]
    torch.save(state, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(argv(tmp_path / "data", out, "--resume")) == 0
    assert (
        f"warning: {out / 'checkpoint.pt'} does not record the data it was made with (an older cml)"
        in capsys.readouterr().err
    )
