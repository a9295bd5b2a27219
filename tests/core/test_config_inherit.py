"""`base:` inheritance: the chain resolved before validation, mappings merged, other values replaced,
cycles and missing bases refused in one line; every shipped config resolves to the values it had
before the configs were split into bases and deltas (tests/core/data/resolved_configs.json)."""

import json
from pathlib import Path

import pytest

from cml.config import load_config, load_raw
from cml.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
RECORDED = json.loads((ROOT / "tests/core/data/resolved_configs.json").read_text())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_child_merges_over_base_recursively(tmp_path):
    write(tmp_path / "base" / "proto.yaml", "train: {epochs: 4, lr: 0.003}\nstrategy: {plugins: [prs, lwf]}\n")
    write(tmp_path / "mid.yaml", "base: base/proto.yaml\ntrain: {epochs: 2}\n")
    child = write(tmp_path / "sub" / "child.yaml", "base: ../mid.yaml\nstrategy: {plugins: [lwf]}\nseed: 3\n")
    assert load_raw(child) == {"train": {"epochs": 2, "lr": 0.003}, "strategy": {"plugins": ["lwf"]}, "seed": 3}
    cfg = load_config(child)
    assert (cfg.train.epochs, cfg.train.lr, cfg.strategy.plugins, cfg.seed) == (2, 0.003, ["lwf"], 3)


def test_cycle_is_one_line(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(UserError, match=r"base: a.yaml makes a cycle \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(tmp_path / "a.yaml")


def test_missing_and_malformed_base(tmp_path):
    with pytest.raises(UserError, match="base: nowhere.yaml is not a file"):
        load_config(write(tmp_path / "a.yaml", "base: nowhere.yaml\n"))
    with pytest.raises(UserError, match="base: expected the path of another config file, got 3"):
        load_config(write(tmp_path / "b.yaml", "base: 3\n"))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_shipped_config_resolves_to_its_recorded_values(name):
    assert load_raw(ROOT / "configs" / name) == RECORDED[name]


def test_every_recorded_config_still_ships():
    assert sorted(RECORDED) == sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
