"""`imports:` finds modules only on PYTHONPATH and among the installed packages (issue 28, item 3):
`python -m cml` takes off the working directory that `-m` puts first on sys.path, so a module
file lying beside a config (a config shared with a colleague, plus a file) is not run by naming it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = "import pathlib\npathlib.Path(__file__).with_name('ran.txt').write_text('ran')\n"


@pytest.fixture
def beside(tmp_path) -> Path:
    (tmp_path / "beside_cfg_module.py").write_text(MODULE)
    (tmp_path / "shared.yaml").write_text("imports: [beside_cfg_module]\nseed: 0\n")
    return tmp_path


def cml(cwd: Path, *paths: Path, args=("run", "shared.yaml")) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, (ROOT, *paths)))
    return subprocess.run(
        [sys.executable, "-m", "cml", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize("command", [("run", "shared.yaml"), ("plan", "shared.yaml"), ("keys", "shared.yaml")])
def test_a_module_beside_the_config_is_not_imported(beside, command):
    out = cml(beside, args=command)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "cannot import 'beside_cfg_module'" in lines[0] and "expected a module on PYTHONPATH" in lines[0]
    assert not (beside / "ran.txt").exists()


def test_the_same_module_on_pythonpath_is_imported(beside):
    out = cml(beside, beside)
    assert (beside / "ran.txt").read_text() == "ran"  # its code ran: it was imported
    # it declares no component: one line saying so, not "cannot import"
    assert out.returncode == 2 and "cannot import" not in out.stderr
    assert "beside_cfg_module: expected a module-level DECLARATION" in out.stderr


def test_the_working_directory_is_off_the_path_only_under_python_m(beside):
    """The removal is in cml/__main__.py: the library imported by a script keeps sys.path as it is."""
    code = "import sys, os; import cml.commands.cli; print(os.getcwd() in sys.path or '' in sys.path)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=beside, env=env, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
