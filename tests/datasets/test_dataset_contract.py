"""Every registered dataset: its declared need for data.root is checked with the config, before
any file is read, and its options section is in the config."""

import pytest

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS


@pytest.mark.parametrize("name", DATASETS.names())
def test_declared_root_need(name, tmp_path):
    if DATASETS.get(name).needs_root:
        with pytest.raises(UserError, match=f"data.root: required for data.dataset '{name}'"):
            load_config(None, [f"data.dataset={name}"])
        assert load_config(None, [f"data.dataset={name}", f"data.root={tmp_path}"]).data.dataset == name
    else:
        assert load_config(None, [f"data.dataset={name}"]).data.dataset == name
    if DATASETS.get(name).options:
        assert hasattr(load_config(None, [f"data.root={tmp_path}"]).data, name)
