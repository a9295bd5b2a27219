"""Training progress for people: tqdm bars on a terminal, one plain line per epoch otherwise.

Avalanche's InteractiveLogger also prints every metric value (hundreds of per-class APs); the
per-step table is printed by the runner instead.
"""

from __future__ import annotations

import sys

from avalanche.logging import BaseLogger
from tqdm import tqdm


class ProgressLogger(BaseLogger):
    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.bar = None
        self.epoch = ""
        self.loss_sum = 0.0
        self.count = 0

    def log_single_metric(self, name, value, x_plot) -> None:
        pass

    def before_training_epoch(self, strategy, metric_values, **kwargs):
        self.loss_sum, self.count = 0.0, 0
        self.epoch = f"step {strategy.experience.step} epoch {strategy.clock.train_exp_epochs + 1}/{strategy.train_epochs}"
        if self.interactive:
            desc = self.epoch
            self.bar = tqdm(total=len(strategy.dataloader), desc=desc, file=self.stream, leave=False)

    def after_training_iteration(self, strategy, metric_values, **kwargs):
        self.loss_sum = self.loss_sum + strategy.loss.detach()  # no GPU sync per iteration
        self.count += 1
        if self.bar is not None:
            self.bar.update()
            if self.count % 25 == 0:
                self.bar.set_postfix(loss=f"{float(self.loss_sum) / self.count:.4f}", refresh=False)

    def after_training_epoch(self, strategy, metric_values, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        else:
            print(f"{self.epoch} loss {float(self.loss_sum) / max(1, self.count):.4f}", file=self.stream, flush=True)
