"""A config is data (issue 28, item 3): the modules its `imports:` names run only with the user's
consent (`--allow-imports`, CML_ALLOW_IMPORTS=1, or `--import NAME`), for every command that reads
a config, and only from PYTHONPATH and the installed packages: `python -m cml` takes off the
working directory that `-m` puts first on sys.path, so a file lying beside a config you were sent
is not run by naming it. The module writes a marker file when imported: it ran iff the file is there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = (
    "import pathlib\npathlib.Path(__file__).with_name('ran.txt').write_text('ran')\n"
    "from cml.plugins import Plugin\n"
    "DECLARATION = Plugin(build=lambda cfg, scenario: None, help='writes a marker file when imported')\n"
)
REFUSED = (
    "shared.yaml: imports: beside_cfg_module: a config's imports run code, so only when asked; allow them "
    "with --allow-imports (or CML_ALLOW_IMPORTS=1), or name each with --import NAME"
)


@pytest.fixture
def beside(tmp_path) -> Path:
    (tmp_path / "beside_cfg_module.py").write_text(MODULE)
    (tmp_path / "shared.yaml").write_text("imports: [beside_cfg_module]\nseed: 0\n")
    return tmp_path


def cml(cwd: Path, *paths: Path, args=("keys", "shared.yaml"), env=()) -> subprocess.CompletedProcess:
    clean = ("PYTHONPATH", "PYTHONSAFEPATH", "CML_ALLOW_IMPORTS")
    environment = {k: v for k, v in os.environ.items() if k not in clean} | dict(env)
    environment["PYTHONPATH"] = os.pathsep.join(map(str, (ROOT, *paths)))
    return subprocess.run(
        [sys.executable, "-m", "cml", *args], capture_output=True, text=True, cwd=cwd, env=environment, timeout=300
    )


def one_error(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    return lines[0]


COMMANDS = [
    ("run", "shared.yaml", "--out", "run"),
    ("run", "shared.yaml", "--out", "run", "--resume"),
    ("plan", "shared.yaml"),
    ("keys", "shared.yaml"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:1] + c[4:]))
def test_without_consent_a_module_on_pythonpath_is_not_imported(beside, command):
    assert one_error(cml(beside, beside, args=command)) == f"error: {REFUSED}"
    assert not (beside / "ran.txt").exists()
    assert not (beside / "run").exists()


@pytest.mark.parametrize(
    "consent, env",
    [(("--allow-imports",), {}), ((), {"CML_ALLOW_IMPORTS": "1"}), (("--import", "beside_cfg_module"), {})],
    ids=["flag", "environment", "--import"],
)
def test_with_consent_the_module_on_pythonpath_is_imported(beside, consent, env):
    out = cml(beside, beside, args=("keys", "shared.yaml", *consent), env=env)
    assert out.returncode == 0, out.stderr
    assert (beside / "ran.txt").read_text() == "ran"
    plugins = next(line for line in out.stdout.splitlines() if line.startswith("strategy.plugins "))
    assert "beside_cfg_module" in plugins


def test_import_needs_no_config_entry_and_consents_to_its_module_only(beside):
    out = cml(beside, beside, args=("keys", "--import", "beside_cfg_module"))
    assert out.returncode == 0, out.stderr
    assert "beside_cfg_module" in next(line for line in out.stdout.splitlines() if line.startswith("strategy.plugins "))
    (beside / "ran.txt").unlink()
    (beside / "other_cfg_module.py").write_text(MODULE.replace("ran.txt", "other.txt"))
    (beside / "two.yaml").write_text("imports: [beside_cfg_module, other_cfg_module]\n")
    error = one_error(cml(beside, beside, args=("keys", "two.yaml", "--import", "other_cfg_module")))
    assert error.startswith("error: two.yaml: imports: beside_cfg_module: a config's imports run code")
    assert not (beside / "ran.txt").exists() and (beside / "other.txt").exists()


def test_consent_for_a_module_beside_the_config_still_finds_it_only_on_pythonpath(beside):
    error = one_error(cml(beside, args=("keys", "shared.yaml", "--allow-imports")))
    assert "cannot import 'beside_cfg_module'" in error and "expected a module on PYTHONPATH" in error
    assert not (beside / "ran.txt").exists()


def test_an_unclear_environment_value_is_one_line(beside):
    error = one_error(cml(beside, beside, env={"CML_ALLOW_IMPORTS": "yes"}))
    assert error == "error: CML_ALLOW_IMPORTS='yes': expected 1 (run the modules a config imports) or 0"
    assert not (beside / "ran.txt").exists()


def test_the_working_directory_is_off_the_path_only_under_python_m(beside):
    """The removal is in cml/__main__.py: the library imported by a script keeps sys.path as it is."""
    code = "import sys, os; import cml.commands.cli; print(os.getcwd() in sys.path or '' in sys.path)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=beside, env=env, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_the_resume_line_repeats_the_consent():
    """The `continue with:` line of a stopped run would otherwise be refused for its imports."""
    from types import SimpleNamespace

    from cml.runtime.run_directory import resume_command

    args = SimpleNamespace(config="c.yaml", overrides=["seed=1"], seeds=None, allow_imports=True, imports=["m"])
    assert resume_command(args, Path("r")) == (
        "python -m cml run c.yaml --out r --resume --set seed=1 --allow-imports --import m"
    )
