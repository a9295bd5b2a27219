"""L3A and linear probing in real runs: exact resume, the protocol configs for one step on
fixtures in the datasets' layouts, 2 processes against one, and the feature cache."""

import json
from pathlib import Path

import pytest
import torch
from protocols.test_protocols import coco_root, voc_root  # noqa: F401
from test_distributed import _assert_same_results, _finish, _generate, _one_and_two_processes, _overrides, _start
from tests_helpers import interrupt_after_step, run_cli, run_full_and_resumed, tiny

from cml.config import load_config
from cml.core.errors import UserError
from cml.strategies._frozen import FeatureCache

REPO = Path(__file__).resolve().parents[2]
DEMO_L3A = str(REPO / "configs" / "demo_l3a.yaml")
TINY_L3A = tiny() + ["train.hflip=false", "model.options.hidden=64", "strategy.l3a.base_epochs=1"]


def test_l3a_resumes_exactly(tmp_path, monkeypatch):
    overrides = TINY_L3A + [f"data.root={tmp_path / 'data'}"]
    full, resumed = run_full_and_resumed(DEMO_L3A, tmp_path, monkeypatch, overrides)
    assert full == resumed and len(full["steps"]) == 3
    assert all(0 < s["map"] <= 100 for s in full["steps"])
    state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    assert state["analytic.gram"].dtype == torch.float64 and state["analytic.weight"].shape == (64, 6)


@pytest.mark.parametrize("config", ["coco_b40_c10_l3a.yaml", "coco_b0_c10_l3a.yaml", "voc_b0_c4_l3a.yaml"])
def test_protocol_configs_run_a_step(tmp_path, monkeypatch, coco_root, voc_root, config):  # noqa: F811
    root = coco_root if config.startswith("coco") else voc_root
    overrides = [
        f"data.root={root}",
        "data.image_size=32",
        "data.num_workers=0",
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "model.options.hidden=32",
        "train.batch_size=32",
        "train.amp=none",
        "eval.batch_size=64",
    ]
    interrupt_after_step(monkeypatch, 0)
    assert run_cli(REPO / "configs" / config, tmp_path / "run", overrides) == 130
    steps = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["steps"]
    assert len(steps) == 1 and 0 < steps[0]["map"] <= 100


@pytest.mark.slow  # 2-process runs (about 20 s); `pytest -m slow`
def test_l3a_two_processes_equal_one(tmp_path):
    overrides = _overrides(
        tmp_path, "model.name=l3a", "strategy.name=l3a", "model.options.hidden=64", "strategy.l3a.base_epochs=1"
    )
    _assert_same_results(*_one_and_two_processes(tmp_path, overrides))


@pytest.mark.slow  # 2-process runs (about 20 s); `pytest -m slow`
def test_l3a_cache_changes_nothing_under_torchrun_with_batchnorm(tmp_path):
    """test_resnet's BatchNorm trains per rank in step 0: the closed form must see rank 0's
    statistics on every rank, whether the features are cached or computed at every pass."""
    runs = []
    for cache in ("true", "false"):
        out = tmp_path / f"cache-{cache}"
        overrides = _overrides(
            out,
            "model.name=l3a",
            "strategy.name=l3a",
            "model.backbone=test_resnet",
            "model.options.hidden=64",
            "strategy.l3a.base_epochs=1",
            f"strategy.feature_cache={cache}",
        )
        _generate(overrides)
        runs.append((out / "two", _start(out / "two", overrides, 2)))
    for _, proc in runs:
        _finish(proc)
    _assert_same_results(runs[0][0], runs[1][0])


def test_probe_trains_the_head_only_and_the_cache_changes_nothing(tmp_path):
    base = tiny() + ["train.hflip=false", "strategy.name=probe", "train.epochs=2", f"data.root={tmp_path / 'data'}"]
    assert run_cli(REPO / "configs" / "demo.yaml", tmp_path / "cached", base) == 0
    assert run_cli(REPO / "configs" / "demo.yaml", tmp_path / "plain", base + ["strategy.feature_cache=false"]) == 0
    cached, plain = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("cached", "plain"))
    for a, b in zip(cached["steps"], plain["steps"]):
        assert a["map"] == pytest.approx(b["map"], abs=1e-3)
    assert run_cli(REPO / "configs" / "demo.yaml", tmp_path / "flip", base + ["train.hflip=true"]) == 2


def test_cache_embeds_each_row_once():
    calls = []

    def embed(images):
        calls.append(images[:, 0].tolist())
        return images * 10

    cache = FeatureCache()
    first = cache("train", torch.tensor([4, 1]), torch.tensor([[4.0, 0], [1.0, 0]]), embed)
    again = cache("train", torch.tensor([1, 7, 4]), torch.tensor([[1.0, 0], [7.0, 0], [4.0, 0]]), embed)
    other = cache("test", torch.tensor([1]), torch.tensor([[5.0, 0]]), embed)
    assert first.tolist() == [[40, 0], [10, 0]] and again.tolist() == [[10, 0], [70, 0], [40, 0]]
    assert other.tolist() == [[50, 0]]  # splits do not share rows
    assert calls == [[4.0, 1.0], [7.0], [5.0]] and cache.computed == 4


def test_augmentation_is_refused_only_with_the_feature_cache():
    """The message's way out works: with the cache off, flips are accepted (before, the message
    advised `strategy.feature_cache: false` and still refused with it)."""
    base = ["strategy.name=l3a", "model.name=l3a", "train.hflip=true"]
    with pytest.raises(UserError, match="train.hflip: strategy l3a caches each image's frozen-backbone feature"):
        load_config(str(REPO / "configs" / "demo.yaml"), base)
    assert load_config(str(REPO / "configs" / "demo.yaml"), base + ["strategy.feature_cache=false"]).train.hflip


def test_n_trained_counts_the_images_the_closed_form_used(tmp_path):
    """Under train.online the batches drop an incomplete last one, but a step that only the closed
    form learns uses every image: n_trained said 32 of 33."""
    overrides = TINY_L3A + ["train.online=true", "train.batch_size=7", f"data.root={tmp_path / 'data'}"]
    assert run_cli(DEMO_L3A, tmp_path / "run", overrides) == 0
    steps = json.loads((tmp_path / "run" / "results.json").read_text())["steps"]
    assert steps[0]["n_trained"] == steps[0]["n_train"] // 7 * 7  # the backbone's batches
    assert any(s["n_train"] % 7 for s in steps[1:]), [s["n_train"] for s in steps]
    assert all(s["n_trained"] == s["n_train"] for s in steps[1:]), [(s["n_train"], s["n_trained"]) for s in steps]
