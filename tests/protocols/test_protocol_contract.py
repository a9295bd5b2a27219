"""Every registered protocol: keys it declares as required are checked with the config, and the
steps it makes from a dataset hold each class in exactly one step."""

from pathlib import Path

import pytest
from tests_helpers import tiny

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS, PROTOCOLS
from cml.protocols.steps import plan_steps

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_required_keys(name):
    for key in PROTOCOLS.get(name).requires_keys:
        with pytest.raises(UserError, match=f"{key}: required when scenario.protocol is {name}"):
            load_config(None, [f"scenario.protocol={name}"])


@pytest.mark.parametrize("name", [n for n in PROTOCOLS.names() if not PROTOCOLS.get(n).requires_keys])
def test_each_class_in_one_step(name, tmp_path):
    cfg = load_config(DEMO, tiny() + [f"scenario.protocol={name}", f"data.root={tmp_path}"])
    plan = plan_steps(cfg, DATASETS.get("synthetic").build(cfg.data))
    taught = sorted(c for step in plan.steps for c in step.classes)
    assert taught == list(range(len(plan.data.class_names)))
