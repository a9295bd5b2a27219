"""The loss door's promise (`cml/strategies/_loss_terms.py`): the order of `strategy.plugins` does
not change a run. The largest valid lists of plugins (a replay buffer, then every other plugin the
config check accepts beside the ones chosen), on as few models as hold every plugin, run in
registry order and reversed; reversing flips the relative order of every pair, so equal runs
mean that no pair depends on its order. Before the door, csc rescaled the whole loss and
`[lwf, csc]` differed from `[csc, lwf]` (csc's list holds lwf); before the strategy ran its
plugins in one order (`canonical_order`), two plugins in one hook differed in the last bits."""

import pytest
import torch
from plugin_cases import DEMO, OPTIONS, TWO_STEPS
from tests_helpers import model_overrides

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import MODELS, PLUGINS
from cml.evaluation.results import MEASURED

TIMING = ("seconds", "time", "throughput")  # wall-clock figures differ between any two runs


def accepted(model: str, plugins: list[str]) -> bool:
    overrides = [f"model.name={model}", f"strategy.plugins=[{','.join(plugins)}]", *model_overrides(model)]
    try:
        load_config(DEMO, TWO_STEPS + OPTIONS + overrides)
    except UserError:
        return False
    return True


def largest_list(model: str, replay: str) -> list[str]:
    chosen = [replay] if accepted(model, [replay]) else []
    for name in PLUGINS.names():
        if PLUGINS.get(name).kind != "replay" and accepted(model, [*chosen, name]):
            chosen.append(name)
    return chosen


def covering_cases() -> list[tuple[str, list[str]]]:
    """Models in registry order, each with its largest list, until every plugin is in some list
    (linear takes most; tdl needs krt, csc needs csc): every plugin, in the fewest runs. The
    replay buffers, which share one implementation (`_replay.py`), take turns."""
    replays, cases, covered = PLUGINS.names(kind="replay"), [], set()
    for model in ["linear", *MODELS.names()]:
        plugins = largest_list(model, replays[len(cases) % len(replays)])
        if not set(plugins) - set(replays) <= covered:
            cases.append((model, plugins))
            covered |= set(plugins)
    assert covered >= set(PLUGINS.names()) - set(replays), sorted(set(PLUGINS.names()) - covered)
    return cases


CASES = covering_cases()


def without_timing(steps: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if not any(t in k for t in TIMING) and k not in MEASURED} for s in steps]


@pytest.mark.parametrize("model,plugins", CASES, ids=[f"{m}-{'-'.join(p)}" for m, p in CASES])
def test_reversed_plugins_give_the_same_run(run_case, model, plugins):
    assert len(plugins) >= 3, f"{model}: only {plugins} accepted together"
    forward, forward_state = run_case(model, tuple(plugins))
    backward, backward_state = run_case(model, tuple(reversed(plugins)))
    assert without_timing(forward["steps"]) == without_timing(backward["steps"])
    for name, tensor in forward_state["model"].items():
        assert torch.equal(tensor, backward_state["model"][name]), name
    breakdown = forward["steps"][1]["loss_breakdown"]  # the terms of step 1, by name
    added = {p for p in plugins if p in {"lwf", "ewc", "pod", "tdl"}} | ({"csc.distillation"} & set(breakdown))
    assert added <= set(breakdown) and "criterion" in breakdown


def test_the_loss_terms_do_not_depend_on_the_order_they_are_added_in(run_case, monkeypatch):
    """The door's own promise, with the strategy's fixed order switched off (the config's order
    runs): csc weighs only the criterion, so lwf's term keeps its weight whether lwf runs before
    or after csc (before the door, [lwf, csc] scaled lwf by alpha: 42.97/38.86 vs 42.53/37.99 on
    the demo). The gradients then add up in another order: equal to float rounding, not bits."""
    monkeypatch.setattr("cml.strategies._base.canonical_order", list)
    csc_first, _ = run_case("csc", ("csc", "lwf"), tag="as-listed")
    lwf_first, _ = run_case("csc", ("lwf", "csc"), tag="as-listed")
    for a, b in zip(csc_first["steps"], lwf_first["steps"]):
        assert a["map"] == pytest.approx(b["map"], abs=1e-3)
        assert a.get("loss_breakdown", {}) == pytest.approx(b.get("loss_breakdown", {}), rel=1e-4)
    assert {"criterion", "lwf", "csc.distillation", "csc.entropy"} <= set(csc_first["steps"][1]["loss_breakdown"])
