"""What the training benches share: their common arguments, and the config, scenario and device
they time. Imported by the bench scripts (run as `python bench/NAME.py`, so `bench/` is on the
path); the repository root is put on the path here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def bench_setup(args, overrides: list[str] = ()):
    """(config, scenario, device), the config without a schedule: the bare loops have none, and
    both sides must do the same work; data.num_workers as a number, and cuDNN set, as `cml run` does."""
    from cml.config import load_config
    from cml.core.registry import DATASETS
    from cml.runtime.launch import loader_workers
    from cml.runtime.setup import pick_device, set_determinism
    from cml.scenarios.builder import build_scenario

    cfg = load_config(args.config, [*overrides, *args.overrides])
    cfg.train.scheduler = "none"
    set_determinism(cfg.train.deterministic)
    scenario = build_scenario(cfg, DATASETS.get(cfg.data.dataset).build(cfg.data))
    device = pick_device(cfg.train.device)
    cfg.data.num_workers = loader_workers(cfg.data.num_workers, device.type != "cpu")
    return cfg, scenario, device
