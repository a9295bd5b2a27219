"""TensorBoard's training-loss axis after a resume: Avalanche plots the epoch loss against its
clock's `train_iterations`, which restarted at 0 in a resumed run (TensorBoard then dropped the
earlier points as orphaned); the checkpoint now carries the clock."""

from run_helpers import argv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests_helpers import interrupt_after_step

from cml.commands.cli import main
from cml.runtime import checkpoint


def losses(out) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("Loss_Epoch")]
    assert len(tags) == 1, acc.Tags()["scalars"]
    return [(e.step, round(e.value, 5)) for e in acc.Scalars(tags[0])]


def test_the_loss_axis_continues_after_a_resume(tmp_path, monkeypatch):
    data = tmp_path / "data"
    assert main(argv(data, tmp_path / "whole")) == 0
    whole = losses(tmp_path / "whole")
    assert len(whole) >= 2 and whole[0][0] < whole[-1][0]

    real_save = interrupt_after_step(monkeypatch, 0)
    assert main(argv(data, tmp_path / "cut")) == 130
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert main(argv(data, tmp_path / "cut", (), "--resume")) == 0
    assert losses(tmp_path / "cut") == whole
    assert checkpoint.load(tmp_path / "cut", 2)["clock"]["train_iterations"] == whole[-1][0]
