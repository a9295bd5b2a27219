import pytest
from run_helpers import argv

from cml.commands.cli import main


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(data folder, an undisturbed run of TWO_STEPS)."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(argv(tmp / "data", tmp / "run")) == 0
    return tmp / "data", tmp / "run"
