"""A plugin that reads `strategy.previous_model` without declaring `uses_previous_model` used to
find None for ever and do nothing (its run equalled finetune); now the read is refused, in one
line that names the way out."""

from types import SimpleNamespace

import pytest

from cml.core.errors import UserError
from cml.strategies._base import MultiLabelStrategy


def strategy_with(plugins):
    fake = SimpleNamespace(
        plugins=plugins,
        keeps_previous_model=any(p.uses_previous_model for p in plugins),
        _previous_model="the previous model",
    )
    return fake


@pytest.mark.parametrize("declared", [False, True])
def test_previous_model_needs_the_declaration(declared):
    reader = SimpleNamespace(name="l2prev", uses_previous_model=declared)
    other = SimpleNamespace(name="lwf-like", uses_previous_model=False)
    fake = strategy_with([reader, other])
    read = MultiLabelStrategy.previous_model.fget
    if declared:
        assert read(fake) == "the previous model"
    else:
        with pytest.raises(UserError) as err:
            read(fake)
        message = str(err.value)
        assert "['l2prev', 'lwf-like']" in message and "uses_previous_model=True" in message
        assert "\n" not in message
