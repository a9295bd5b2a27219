"""The plugins' in-process runs, shared by the files here: two steps of tiny data, one dataset
parsed once per module, each plugin list run once and its results and checkpoint cached."""

import contextlib
import io

import pytest
import torch
from plugin_cases import DEMO, OPTIONS, TWO_STEPS
from tests_helpers import model_overrides

from cml.config import load_config
from cml.core.registry import DATASETS


@pytest.fixture(scope="module")
def two_step_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("combinations")
    cfg = load_config(DEMO, TWO_STEPS + [f"data.root={root / 'data'}"])
    return root, DATASETS.get("synthetic").build(cfg.data)


@pytest.fixture(scope="module")
def run_case(two_step_data):
    """Runs one plugin list in-process (the dataset parsed once); results and checkpoint, cached."""
    from cml.commands.run import run

    root, data = two_step_data
    done = {}

    def run_plugins(model: str, plugins: tuple[str, ...], dynamic: bool = False, tag: str = ""):
        """TAG: a case run under other conditions (a monkeypatch) is kept apart."""
        if (model, plugins, dynamic, tag) not in done:
            cfg = load_config(
                DEMO,
                TWO_STEPS
                + OPTIONS
                + [
                    f"data.root={root / 'data'}",
                    f"model.name={model}",
                    f"strategy.plugins=[{','.join(plugins)}]",
                    f"strategy.pseudo.dynamic={dynamic}",
                    f"strategy.pseudo.threshold={0.8 if dynamic else 0.0}",
                    "strategy.replay.per_class=2",
                    *model_overrides(model),
                ],
            )
            out = root / "-".join([model, *plugins, "dynamic" * dynamic, tag])
            out.mkdir()
            with contextlib.redirect_stdout(io.StringIO()):
                summary = run(cfg, data, out)
            done[model, plugins, dynamic, tag] = summary, torch.load(out / "checkpoint.pt", weights_only=True)
        return done[model, plugins, dynamic, tag]

    return run_plugins
