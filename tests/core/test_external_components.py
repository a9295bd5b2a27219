"""A plugin, a model and a dataset from modules outside cml, one file each (tests/core/external/),
named in the config's `imports:`: listed by `cml keys`, checked before torch is imported (a bad
option of each: one line, exit 2), and run for one step. Nothing else is edited. The commands
consent to the imports through CML_ALLOW_IMPORTS=1 (tests/core/test_imports_path.py: without it,
nothing is imported)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = Path(__file__).resolve().parent / "external"
CONFIG = """imports: [ext_plugin, ext_model, ext_data]
seed: 0
data: {dataset: ext_data, root: %s, image_size: 32,
       synthetic: {train_images: 40, test_images: 24, image_size: 32}, ext_data: {classes: 4}}
scenario: {protocol: static}
model: {name: ext_model, backbone: test_resnet, options: {scale: 2.0}}
strategy: {plugins: [ext_plugin], ext_plugin: {every: 1}}
train: {epochs: 1, batch_size: 16, lr: 0.01}
eval: {batch_size: 32}
"""
CHECK_THEN_REPORT = (
    "import sys\nfrom cml.commands.cli import main\nrc = main(sys.argv[1:])\n"
    "heavy = [m for m in ('torch', 'avalanche', 'timm') if m in sys.modules]\n"
    "print('HEAVY', heavy)\nsys.exit(rc)"
)


def cml(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXTERNAL)]), "CML_ALLOW_IMPORTS": "1"}
    return subprocess.run(
        [sys.executable, "-c", CHECK_THEN_REPORT, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "external.yaml"
    path.write_text(CONFIG % (tmp_path / "data"))
    return path


def test_listed_by_keys(config):
    out = cml("keys", str(config))
    assert out.returncode == 0, out.stderr
    for key, help_text in (
        ("strategy.ext_plugin.every", "count every n-th iteration"),
        ("model.options.scale", "ext_model: factor on the logits"),
        ("data.ext_data.classes", "how many synthetic classes"),
    ):
        line = next(line for line in out.stdout.splitlines() if line.startswith(key + " "))
        assert help_text in line
    assert "ext_plugin" in next(line for line in out.stdout.splitlines() if line.startswith("strategy.plugins"))
    assert "HEAVY []" in out.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("strategy.ext_plugin.every=0", "strategy.ext_plugin.every: expected a value >= 1, got 0"),
        ("model.options.scale=-1", "model.options.scale: expected a value > 0, got -1"),
        ("data.ext_data.classes=2", "data.ext_data.classes: expected a value in [4, 24], got 2"),
        ("model.options.scael=2", "unknown key 'model.options.scael'; did you mean 'model.options.scale'?"),
        # the throwaway model declares no capabilities: a plugin needing one is refused by the vocabulary
        ("strategy.plugins=[ext_plugin,pod]", "pod needs a model with backbone_stages"),
    ],
)
def test_bad_options_are_one_line_before_torch(config, tmp_path, override, message):
    out = cml("run", str(config), "--set", override, "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "HEAVY []" in out.stdout


def test_a_missing_module_is_one_line(config, tmp_path):
    out = cml("run", str(config), "--set", "imports=[no_such_module]", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "imports: cannot import 'no_such_module' (ModuleNotFoundError" in out.stderr


def test_runs_one_step(config, tmp_path):
    out = cml("run", str(config), "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["dataset"] == "ext_data" and len(results["steps"]) == 1
    assert len(results["steps"][0]["classes"]) == 4
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    batches = -(-results["steps"][0]["n_train"] // 16)  # one epoch, the last batch kept
    assert state["strategy"]["plugins"]["ext_plugin"] == {"count": batches}


def test_a_plugin_reading_the_previous_model_without_declaring_it_is_refused(tmp_path):
    config = tmp_path / "reader.yaml"
    text = (CONFIG % (tmp_path / "data")).replace("imports: [ext_plugin,", "imports: [ext_reader,")
    config.write_text(
        text.replace("strategy: {plugins: [ext_plugin], ext_plugin: {every: 1}}", "strategy: {plugins: [ext_reader]}")
    )
    out = cml("run", str(config), "--out", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "declares uses_previous_model" in errors[0], out.stderr
    assert "uses_previous_model=True" in errors[0]
