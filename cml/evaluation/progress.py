"""Training progress for people: a tqdm bar on a terminal, timed plain lines anywhere else.

A run whose output goes to a file (a cluster job, `nohup`) would otherwise stay silent through a
long epoch (an online PRS step of hundreds of batches, a COCO epoch). Off a terminal a line is
printed a few seconds after a step starts (`FIRST_LINE_S`, or `log.every_s` if shorter), then
at most every `log.every_s` seconds, and at the end of each epoch:

    step 1 epoch 2/4 batch 37/138 loss 0.1234 | 52.1 images/s | 0:01:20 left in the step

loss: the epoch's mean so far; images/s: images through the model (replayed ones included, every
process's under torchrun) since the step started; time left: the step's remaining batches at the
step's mean time per batch. On a terminal one bar per step shows the same (its rate, its time
left, the epoch and the loss). The loss is summed on the device and read only when shown, so
there is no GPU sync per batch.

Avalanche's InteractiveLogger also prints every metric value (hundreds of per-class APs), so it
is only an option (`log.loggers: [interactive]`); the per-step table is printed by the runner.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from avalanche.logging import BaseLogger
from tqdm import tqdm

from cml.runtime import distributed

FIRST_LINE_S = 5.0  # the first line of a step, off a terminal: this soon, so a log shows life early


class ProgressLogger(BaseLogger):
    def __init__(self, stream=None, every_s: float = 60.0):
        super().__init__()
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.every_s = every_s
        self.bar = None
        self.step_start = self.next_line = 0.0
        self.done = self.total = self.images = 0  # this step's batches done, its batches, its images
        self.printed_at = -1  # `done` at the last line
        self.epoch = ""
        self.loss_sum = 0.0
        self.count = 0

    def log_single_metric(self, name, value, x_plot) -> None:
        pass

    def before_training_exp(self, strategy, metric_values, **kwargs):
        self.done, self.images, self.printed_at = 0, 0, -1
        self.total = len(strategy.dataloader) * strategy.train_epochs
        self.step_start = time.perf_counter()
        self.next_line = self.step_start + min(self.every_s, FIRST_LINE_S)
        if self.interactive:
            self.bar = tqdm(
                total=self.total, desc=f"step {strategy.experience.step}", unit="batch", file=self.stream, leave=False
            )

    def before_training_epoch(self, strategy, metric_values, **kwargs):
        self.loss_sum, self.count = 0.0, 0
        epoch = strategy.clock.train_exp_epochs + 1
        self.epoch = f"step {strategy.experience.step} epoch {epoch}/{strategy.train_epochs}"

    def after_training_iteration(self, strategy, metric_values, **kwargs):
        self.loss_sum = self.loss_sum + strategy.loss.detach()  # no GPU sync per iteration
        self.count += 1
        self.done += 1
        self.images += len(strategy.mb_y) * distributed.world()
        if self.bar is not None:
            self.bar.update()
            if self.count % 25 == 0:
                self.bar.set_description(self.epoch, refresh=False)
                self.bar.set_postfix_str(f"loss {self.mean_loss():.4f}, {self.rate():.1f} images/s", refresh=False)
        elif time.perf_counter() >= self.next_line:
            self.print_line(strategy)

    def after_training_epoch(self, strategy, metric_values, **kwargs):
        if self.bar is None and self.printed_at != self.done:  # not twice for the epoch's last batch
            self.print_line(strategy)

    def after_training_exp(self, strategy, metric_values, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def mean_loss(self) -> float:
        return float(self.loss_sum) / max(1, self.count)

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.step_start, 1e-9)

    def print_line(self, strategy) -> None:
        now = time.perf_counter()
        per_batch = (now - self.step_start) / max(1, self.done)
        left = timedelta(seconds=round(per_batch * (self.total - self.done)))
        print(
            f"{self.epoch} batch {self.count}/{len(strategy.dataloader)} loss {self.mean_loss():.4f} | "
            f"{self.rate():.1f} images/s | {left} left in the step",
            file=self.stream,
            flush=True,
        )
        self.next_line, self.printed_at = now + self.every_s, self.done
