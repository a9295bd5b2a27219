"""cml's Weights & Biases logger (`log.loggers: [wandb]`, options under `log.wandb`).

Avalanche's WandBLogger passes every value's x as W&B's own `step`, which must never go back: cml's
values (x: the last trained step, 0, 1, ...) come after Avalanche's (x: training iterations), so
W&B drops them all ("Tried to log to step 0 that is less than the current step 14"); with wandb
0.31 it also fails at start (`wandb.util.generate_id`, `run._label` are gone). This logger leaves
W&B's step to W&B (one per call) and logs each value with its own x, declared with
`define_metric(name, step_metric=...)`: cml's values against `trained_step`, every other metric's
against `train_iteration` (Avalanche's x). Scalars only; images and histograms are left out.

`log.wandb.mode: offline` (the default) writes RUN_DIR/wandb/offline-run-*/ and contacts no
server (`wandb sync` uploads it later); the mode is passed to `wandb.init`, so it wins over
WANDB_MODE. The run's id is kept in RUN_DIR/wandb/cml-run-id: a resumed cml run continues it.
"""

from __future__ import annotations

import secrets
import string
import warnings
from collections import defaultdict
from pathlib import Path

from avalanche.logging import BaseLogger

from cml.core.errors import UserError
from cml.evaluation.metric_plugin import MultiLabelMetrics, scalars

STEP, ITERATION = "trained_step", "train_iteration"  # the two x axes


class WandBLogger(BaseLogger):
    def __init__(self, run_dir: str | Path, options, config: dict | None = None):
        super().__init__()
        import wandb

        run_dir = Path(run_dir)
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        id_file = run_dir / "wandb" / "cml-run-id"
        if not id_file.exists():  # W&B's id alphabet: lower-case letters and digits
            id_file.write_text("".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)))
        try:
            self.run = wandb.init(
                project=options.project,
                entity=options.entity,
                mode=options.mode,
                dir=str(run_dir),
                id=id_file.read_text().strip(),
                name=run_dir.name,
                config=config,
                resume="allow",
                settings=wandb.Settings(console="off", disable_git=True, silent=True),
            )
        except Exception as err:  # no account, no network, a refused id: one line, not W&B's traceback
            first = " ".join(str(err).split())[:200]
            raise UserError(
                f"log.wandb: W&B could not start the run ({first}); log.wandb.mode: offline needs no account"
            ) from None
        self.run.define_metric(STEP)
        self.run.define_metric(ITERATION)
        self.axis: dict[str, str] = {}  # each metric name's x, declared once

    def log_metrics(self, metric_values) -> None:
        if self.run is None:
            if metric_values:
                warnings.warn(
                    "log.loggers: wandb: the W&B run is finished (Experiment.close); values left out", stacklevel=2
                )
            return
        rows: dict[tuple[str, int], dict] = defaultdict(dict)
        for mv in metric_values:
            axis = STEP if isinstance(mv.origin, MultiLabelMetrics) else ITERATION
            for name, value in scalars(mv):
                if name not in self.axis:
                    self.run.define_metric(name, step_metric=axis)
                    self.axis[name] = axis
                rows[axis, mv.x_plot][name] = value
        for (axis, x), values in rows.items():
            self.run.log({axis: x, **values})

    def log_summary(self, values: dict[str, float], step: int) -> None:
        """The summary after STEP against `trained_step`, also as the run's W&B summary."""
        if self.run is None:
            return
        for name in values:
            if name not in self.axis:
                self.run.define_metric(name, step_metric=STEP)
                self.axis[name] = STEP
        self.run.log({STEP: step, **values})

    def close(self) -> None:
        """End the W&B run: its files are complete (and an online run marked finished) only then."""
        if self.run is not None:
            self.run.finish()
            self.run = None
