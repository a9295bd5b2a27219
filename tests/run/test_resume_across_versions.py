"""Resuming a run started by an older cml (issue 28, item 5): a key added to the config since the
run started is absent from its saved config.yaml; at its default it is no difference. A real
difference is one line naming the saved file and the ways out."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from tests_helpers import interrupt_after_step, tiny

from cml.commands.cli import main
from cml.config import load_config, to_dict
from cml.core.errors import UserError
from cml.evaluation.results import reproducible
from cml.runtime import checkpoint
from cml.runtime.run_directory import check_run_directory, first_difference

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def _args(tmp_path, out, overrides, *extra):
    args = ["run", DEMO, "--out", str(out)]
    for item in overrides + [f"data.root={tmp_path / 'data'}"]:
        args += ["--set", item]
    return args + list(extra)


def _saved(run_dir: Path, cfg, drop=(), change=()) -> None:
    saved = to_dict(cfg)
    for dotted in drop:
        *parents, last = dotted.split(".")
        node = saved
        for key in parents:
            node = node[key]
        del node[last]
    for dotted, value in change:
        *parents, last = dotted.split(".")
        node = saved
        for key in parents:
            node = node[key]
        node[last] = value
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


def test_a_key_missing_from_the_saved_config_at_its_default_is_no_difference(tmp_path):
    cfg = load_config(DEMO)
    _saved(tmp_path / "run", cfg, drop=("imports", "log", "model.options.head_init"))
    check_run_directory(SimpleNamespace(resume=True), cfg, tmp_path / "run")  # no error


def test_a_missing_key_with_another_value_now_is_a_difference(tmp_path):
    cfg = load_config(DEMO, ["log.every_s=5"])
    _saved(tmp_path / "run", cfg, drop=("log.every_s",))
    with pytest.raises(UserError) as err:
        check_run_directory(SimpleNamespace(resume=True), cfg, tmp_path / "run")
    assert "log.every_s (not in the run's config.yaml, 5.0 now)" in str(err.value)


def test_a_changed_key_names_the_saved_file_and_the_ways_out(tmp_path):
    cfg = load_config(DEMO)
    saved = tmp_path / "run" / "config.yaml"
    _saved(tmp_path / "run", cfg, change=(("seed", 7),))
    with pytest.raises(UserError) as err:
        check_run_directory(SimpleNamespace(resume=True), cfg, tmp_path / "run")
    text = str(err.value)
    assert "\n" not in text
    assert f"seed (7 in the run, {cfg.seed!r} now)" in text
    assert f"edit {saved}" in text and "start a new run" in text


def test_first_difference_keeps_keys_the_current_config_lacks():
    assert first_difference({"a": 1}, {"a": 1, "gone": 2}, {"a": 0}) == "gone (2 in the run, None now)"


def test_an_interrupted_run_saved_before_a_key_existed_resumes(tmp_path, monkeypatch, capsys):
    """The saved config.yaml of a real interrupted run loses `imports` (as a run of a cml before
    the key would have it): --resume continues it and equals an uninterrupted run."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(_args(tmp_path, full, tiny())) == 0
    real_save = interrupt_after_step(monkeypatch, 1)
    assert main(_args(tmp_path, killed, tiny())) == 130
    monkeypatch.setattr(checkpoint, "save", real_save)
    saved = yaml.safe_load((killed / "config.yaml").read_text())
    del saved["imports"]
    (killed / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    capsys.readouterr()
    assert main(_args(tmp_path, killed, tiny(), "--resume")) == 0, capsys.readouterr().err
    a = reproducible(json.loads((full / "results.json").read_text()))  # times and memory differ
    b = reproducible(json.loads((killed / "results.json").read_text()))
    assert a == b
