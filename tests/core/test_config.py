import subprocess
import sys
from pathlib import Path

import pytest

from cml.commands.cli import main
from cml.config import load_config
from cml.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_unknown_key_suggests_closest(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(write(tmp_path, "train:\n  epoch: 3\n")))
    assert code == 2
    assert "unknown key 'train.epoch'" in err and "did you mean 'train.epochs'" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_wrong_type_names_key_and_expectation(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(write(tmp_path, "train:\n  batch_size: big\n")))
    assert code == 2 and "train.batch_size: expected an integer, got 'big'" in err


def test_bool_is_not_an_integer(tmp_path):
    with pytest.raises(UserError, match="train.epochs: expected an integer"):
        load_config(write(tmp_path, "train:\n  epochs: true\n"))


def test_out_of_range_value(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(write(tmp_path, "eval:\n  threshold: 1.5\n")))
    assert code == 2 and "eval.threshold: expected a value in [0, 1], got 1.5" in err


def test_choice_and_registry_names(tmp_path):
    with pytest.raises(UserError, match="train.optimizer: expected one of 'adam'"):
        load_config(None, ["train.optimizer=rmsprop"])
    with pytest.raises(UserError, match="strategy.name: unknown strategy 'fintune'"):
        load_config(None, ["strategy.name=fintune"])
    with pytest.raises(UserError, match="data.dataset: unknown dataset 'imagenet'"):
        load_config(None, ["data.dataset=imagenet"])


def test_missing_paths_are_named(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(write(tmp_path, "model:\n  pretrained: /nonexistent/w.pth\n")))
    assert code == 2 and "model.pretrained: file not found: /nonexistent/w.pth" in err
    code, err = run_cli(capsys, "run", str(tmp_path / "absent.yaml"))
    assert code == 2 and "absent.yaml: config file not found" in err
    with pytest.raises(UserError, match="scenario.split_dir: folder not found"):
        load_config(None, ["scenario.protocol=split-files", "scenario.split_dir=/nonexistent"])


def test_invalid_yaml_names_line(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(write(tmp_path, "train:\n  epochs: [1\n")))
    assert code == 2 and "c.yaml: line" in err and "not valid YAML" in err


def test_set_values_are_parsed_as_yaml(tmp_path):
    cfg = load_config(
        write(tmp_path, "train:\n  epochs: 2\n"),
        ["train.epochs=5", "train.lr=3e-4", "scenario.order=[b, a]", "train.hflip=false"],
    )
    assert cfg.train.epochs == 5 and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.scenario.order == ["b", "a"] and cfg.train.hflip is False
    with pytest.raises(UserError, match="unknown key 'trian'"):
        load_config(None, ["trian.epochs=1"])


def test_documented_keys_exist():
    cfg = load_config(None)
    for dotted in (
        "seed",
        "data.dataset",
        "data.root",
        "data.image_size",
        "scenario.protocol",
        "scenario.base",
        "scenario.increment",
        "model.name",
        "model.backbone",
        "strategy.name",
        "strategy.plugins",
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "eval.threshold",
    ):
        node = cfg
        for part in dotted.split("."):
            node = getattr(node, part)


def test_config_errors_come_before_heavy_imports(tmp_path):
    bad = write(tmp_path, "modle:\n  name: linear\n")
    code = (
        "import sys\nfrom cml.commands.cli import main\nrc = main(['run', sys.argv[1]])\n"
        "heavy = [m for m in ('torch', 'avalanche', 'timm') if m in sys.modules]\n"
        "print('HEAVY', heavy)\nsys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "unknown key 'modle'; did you mean 'model'?" in proc.stderr
    assert "HEAVY []" in proc.stdout


def test_shipped_configs_are_valid():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        text = path.read_text()
        overrides = [] if "synthetic" in text else ["data.root=/tmp"]
        if "split-files" in text:
            overrides.append("scenario.split_dir=/tmp")
        if "groups:" in text:  # PRS's class lists ship with its release, not with cml
            overrides += [f"eval.groups.{g}=null" for g in ("majority", "moderate", "minority")]
        load_config(path, overrides)


def test_config_reference_doc_is_current():
    from cml.config import markdown_reference

    assert (ROOT / "docs" / "config.md").read_text() == markdown_reference(), (
        "regenerate with: python -m cml keys --markdown > docs/config.md"
    )
