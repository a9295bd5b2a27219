"""Combinations that used to run and give nonsense are refused with the config, before torch
(issue 28, item 7): each is one line naming the key to change."""

import pytest

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import MODELS, STRATEGIES

REQUIRING = [name for name in MODELS.names() if MODELS.get(name).requires]


def test_l3a_under_finetune_is_refused():
    """It trained l3a's base linear head by gradient and reported it as l3a."""
    with pytest.raises(UserError, match="model.name: model l3a needs strategy.name: l3a, got 'finetune'") as err:
        load_config(None, ["model.name=l3a", "strategy.name=finetune"])
    assert "\n" not in str(err.value)
    load_config(None, ["model.name=l3a", "strategy.name=l3a", "train.hflip=false"])


@pytest.mark.parametrize("name", REQUIRING)
def test_every_model_requirement_is_checked_with_the_config(name):
    for key, value in MODELS.get(name).requires.items():
        assert key == "strategy.name", "extend this test to the new key"
        other = next(s for s in STRATEGIES.names() if s != value)
        with pytest.raises(UserError, match=f"model.name: model {name} needs {key}: {value}"):
            load_config(None, [f"model.name={name}", f"{key}={other}"])


def test_l3a_pseudo_labels_need_partial_labels():
    """Under full labels they set 183 of 191 true negatives of old classes to 1."""
    base = ["model.name=l3a", "strategy.name=l3a", "train.hflip=false"]
    for labels in ("full", "all"):
        expected = f"strategy.l3a.pseudo_labels: needs scenario.labels: partial, got {labels}"
        with pytest.raises(UserError, match=expected):
            load_config(None, [*base, f"scenario.labels={labels}"])
    load_config(None, [*base, "scenario.labels=full", "strategy.l3a.pseudo_labels=false"])
