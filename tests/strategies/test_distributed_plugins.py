"""Every registered plugin under torchrun: 2 processes (gloo, CPU) give one process's results, a
pair of runs per plugin on the first model that takes it (about 30 s a pair on 2 cores). Marked
`slow`: the default run (`pytest -q`, CI) leaves it out, `pytest -m slow` runs it. The hand-picked
combinations of test_distributed.py stay in the default run."""

import json

import pytest
from test_distributed import DEMO, _assert_same_results, _one_and_two_processes, _overrides
from tests_helpers import tiny_model_options

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import MODELS, PLUGINS

pytestmark = pytest.mark.slow
# every plugin visibly acts on 6 classes in 3 steps: every old class at 0 a pseudo-label, small buffers
ACTING = ["strategy.pseudo.threshold=0.0", "strategy.replay.per_class=2", "strategy.replay.size=16"]


def model_for(plugin: str, tmp_path) -> list[str]:
    """linear, else the first registered model the config check accepts with PLUGIN (tdl: krt),
    tiny; the backbone stays test_distributed's LayerNorm one (no per-rank BatchNorm statistics)."""
    for model in ["linear", *MODELS.names()]:
        items = [f"model.name={model}", f"model.options={json.dumps(tiny_model_options(model))}"]
        try:
            load_config(DEMO, _overrides(tmp_path, *items, f"strategy.plugins=[{plugin}]"))
            return items
        except UserError:
            continue
    raise AssertionError(f"no registered model takes plugin {plugin}")


# csc needs model csc, whose graph convolution has a BatchNorm1d of its own: on the CPU each rank
# normalises over its slice (measured: step 0 mAP 71.94 vs 71.40 with 2 processes, before the
# plugin acts); test_distributed.py's csc test compares what must be equal there (the label graph)
PER_RANK_NORM = {"csc"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.skip(reason="its model normalises per rank on the CPU"))
        if n in PER_RANK_NORM
        else n
        for n in PLUGINS.names()
    ],
)
def test_every_plugin_matches_one_process(tmp_path, name):
    overrides = _overrides(tmp_path, *model_for(name, tmp_path), *ACTING, f"strategy.plugins=[{name}]")
    one, two = _one_and_two_processes(tmp_path, overrides)
    _assert_same_results(one, two)
