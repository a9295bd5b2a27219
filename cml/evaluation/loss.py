"""The epoch's mean training loss, as Avalanche's `loss_metrics(epoch=True)` reports it (same name,
same value), summed on the device.

Avalanche's `LossMetric` turns the loss into a Python float at every iteration (`Mean.update`
calls `float(value)`): a host sync per batch, so the host waits for the GPU and cannot prepare
the next batch (replay reads, buffer offers) meanwhile. This one adds the batch's loss to a device
tensor and reads it once, when the epoch's value is emitted.
"""

from __future__ import annotations

import torch
from avalanche.evaluation.metrics.loss import EpochLoss, LossMetric


class DeviceLoss(LossMetric):
    def __init__(self):
        super().__init__()
        self.reset()

    @torch.no_grad()
    def update(self, loss: torch.Tensor, patterns: int) -> None:
        self._sum = self._sum + torch.mean(loss.detach()).double() * patterns  # as Avalanche, in float64
        self._patterns += patterns

    def result(self) -> float:
        return float(self._sum) / self._patterns if self._patterns else 0.0

    def reset(self) -> None:
        self._sum, self._patterns = 0.0, 0


class EpochLossOnDevice(EpochLoss):
    def __init__(self):
        super().__init__()
        self._loss = self._metric = DeviceLoss()
