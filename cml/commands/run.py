"""`python -m cml run`'s experiment: the run directory is already checked, locked and holds the
config (`cml.commands.cli`); `cml.experiment.Experiment` builds and runs the rest."""

from __future__ import annotations

from pathlib import Path

from cml.config import Config
from cml.datasets._types import MultiLabelData
from cml.experiment import Experiment


def run(cfg: Config, data: MultiLabelData, run_dir: Path, resume: bool = False) -> dict:
    """Under torchrun every rank runs this; rank 0 alone writes the run directory and prints."""
    return Experiment(cfg, run_dir, data=data, resume=resume).run()
