"""docs/api.md's examples run as written, with the tiny settings of the other tests added to their
`overrides` and `runs` moved to a temporary folder. The first trains the demo with PRS + LwF and
an extra Avalanche metric and logger through `cml.Experiment`: its results equal `python -m cml
run` with the same config and seed, number for number, and `compare` reads its directory. The
second trains Avalanche's Naive with MAS on cml's benchmark and model and evaluates the whole test
stream after each step."""

import json
import math
import re
from pathlib import Path

import pytest
from tests_helpers import tiny

from cml.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), flags=re.S)
METRIC_KEYS = ("map", "cp", "cr", "cf1", "macro_f1", "op", "or", "of1", "per_class_ap", "step_map", "n_train", "n_test")


def tiny_settings(tmp_path: Path) -> list[str]:
    return [*tiny(), "scenario.base=3", "scenario.increment=3", f"data.root={tmp_path / 'data'}"]


def run_example(index: int, tmp_path: Path, monkeypatch) -> dict:
    code = EXAMPLES[index]
    assert "overrides = [" in code and '"runs' in code, "the example's overrides or run folder moved"
    settings = ", ".join(repr(s) for s in tiny_settings(tmp_path))
    code = code.replace("overrides = [", f"overrides = [{settings}, ", 1)
    code = code.replace('"runs/', f'"{tmp_path}/runs/').replace('"runs-', f'"{tmp_path}/runs-')
    monkeypatch.chdir(ROOT)  # the examples name configs/ from the repository root
    namespace: dict = {}
    exec(compile(code, f"docs/api.md example {index + 1}", "exec"), namespace)
    return namespace


def test_the_docs_have_the_two_examples():
    assert len(EXAMPLES) == 2


def test_the_api_example_equals_the_command_line(tmp_path, monkeypatch, capsys):
    namespace = run_example(0, tmp_path, monkeypatch)
    api_dir = tmp_path / "runs" / "api-demo"
    cli_dir = tmp_path / "cli"
    words = ["run", str(ROOT / "configs" / "demo.yaml"), "--out", str(cli_dir)]
    for item in [*tiny_settings(tmp_path), "strategy.plugins=[prs,lwf]", "strategy.replay.size=200"]:
        words += ["--set", item]
    assert main(words) == 0
    api, cli = (json.loads((d / "results.json").read_text()) for d in (api_dir, cli_dir))
    assert namespace["summary"]["avg_map"] == api["avg_map"]
    for key in ("avg_map", "last_map", "avg_forgetting", "map_matrix", "class_order"):
        assert api[key] == cli[key], key
    assert len(api["steps"]) == len(cli["steps"]) == 2
    for a, c in zip(api["steps"], cli["steps"]):
        assert {k: a[k] for k in METRIC_KEYS} == {k: c[k] for k in METRIC_KEYS}
    log = (tmp_path / "runs-api-demo.log").read_text()
    assert "Time_Epoch" in log and "eval/mAP" in log  # the extra metric and cml's, through the extra logger
    assert (api_dir / "config.yaml").is_file() and any((api_dir / "tb").iterdir())
    capsys.readouterr()
    assert main(["compare", str(api_dir), "--out", str(tmp_path / "compare.png"), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert len(groups) == 1 and groups[0]["runs"] == [str(api_dir)]


def test_the_naive_example_trains_with_mas_and_scores_the_whole_test_stream(tmp_path, monkeypatch):
    namespace = run_example(1, tmp_path, monkeypatch)
    strategy = namespace["strategy"]
    assert type(strategy).__name__ == "Naive"
    assert strategy.plugins[0].importance  # MAS computed importances on the uint8 dataset
    log = (tmp_path / "runs-naive.log").read_text()
    values = [float(v) for v in re.findall(r"eval/mAP = ([-\d.e+naninf]+)", log)]
    assert len(values) >= 2  # after each of the two steps
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in values)


@pytest.mark.parametrize("name", ["lwf", "prs"])
def test_a_cml_plugin_in_naive_is_one_line(tmp_path, name):
    import torch
    from avalanche.training import Naive

    import cml

    cfg = cml.load_config(ROOT / "configs" / "demo.yaml", tiny_settings(tmp_path))
    scenario = cml.build_scenario(cfg, cml.load_data(cfg.data))
    model = cml.build_model(cfg)
    plugin = cml.PLUGINS.get(name).build(cfg, scenario)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        criterion=cml.masked_bce,
        train_mb_size=16,
        plugins=[plugin],
    )
    with pytest.raises(cml.UserError, match=rf"plugin {name}: a cml plugin needs cml's strategy .*Naive has not"):
        strategy.train(scenario.benchmark.train_stream[0])
