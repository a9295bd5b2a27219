import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests_helpers, coco_fixture for tests/<kind>/


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated datasets and parse caches go to a per-session temp folder, not ~/.cache."""
    monkeypatch.setenv("CML_CACHE", str(tmp_path_factory.getbasetemp() / "cml-cache"))
