"""The non-finite guard (`train.nonfinite`): a NaN/inf loss stops the run or skips the batch.

- "stop" raises TrainingDiverged naming the step, epoch and batch. The check stays on the device
  (no GPU sync per batch): the first bad batch and its loss are kept there and read every
  CHECK_EVERY batches and at the end of every epoch, where the weights are checked too (a finite
  loss followed by non-finite weights can only come from the epoch's last update).
- "skip" reads the flag at every batch (one sync) and skips that batch's backward and update;
  every rank skips the same batches (torchrun). Skipped batches count 0 in the epoch's mean loss.
"""

from __future__ import annotations

import torch

from cml import distributed
from cml.errors import TrainingDiverged

CHECK_EVERY = 32  # stop mode: batches between two reads of the device-side flag


def batch_name(strategy, index: int) -> str:
    n = len(strategy.dataloader)
    return (f"step {strategy.experience.step}, epoch {index // n + 1}/{strategy.train_epochs}, "
            f"batch {index % n + 1}/{n}")


def weights_finite(model: torch.nn.Module) -> bool:
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class NonFiniteGuard:
    def __init__(self, policy: str):
        self.policy = policy
        self.skipped_batches = 0  # this step's batches skipped for a non-finite loss
        self.skip_update = False
        self.first: tuple[torch.Tensor, torch.Tensor] | None = None  # (first bad batch, its loss)

    def start_step(self) -> None:
        self.skipped_batches, self.first = 0, None

    def loss_usable(self, strategy) -> bool:
        """False when this batch is to be skipped; raises when the run is to stop."""
        loss = strategy.loss.detach()
        finite = torch.isfinite(loss)
        index = strategy.clock.train_exp_iterations
        if self.policy == "stop":
            first, value = self.first or (torch.full_like(finite, -1, dtype=torch.long), loss)
            new = ~finite & (first < 0)
            self.first = (torch.where(new, index, first), torch.where(new, loss, value))
            return True
        if bool(distributed.all_reduce_(finite.float(), "min")):  # every rank skips the same batches
            return True
        if not weights_finite(strategy.model):
            raise TrainingDiverged(f"{batch_name(strategy, max(index - 1, 0))}: the weights became non-finite "
                                   "after this batch's update; skipping batches cannot repair them: lower train.lr")
        self.skipped_batches += 1
        self.skip_update = True
        strategy.loss = torch.zeros_like(strategy.loss)
        return False

    def take_skip(self) -> bool:
        """Whether the coming optimizer step is to be skipped (once)."""
        skip, self.skip_update = self.skip_update, False
        return skip

    def check(self, strategy, end_of_epoch: bool = False) -> None:
        first = self.first[0] if self.first is not None else torch.tensor(-1, device=strategy.device)
        # the first bad batch on any rank, so that every rank stops at the same check
        first = distributed.all_reduce_(torch.where(first < 0, 2**62, first), "min")
        if int(first) < 2**62:
            index, local = int(first), self.first
            value = float(local[1]) if local is not None and int(local[0]) == index else float("nan")
            raise TrainingDiverged(f"{batch_name(strategy, index)}: the loss is {value}; training stopped "
                                   "(train.nonfinite: stop); lower train.lr, or set train.nonfinite=skip "
                                   "to skip such batches")
        if end_of_epoch and not weights_finite(strategy.model):
            raise TrainingDiverged(f"{batch_name(strategy, strategy.clock.train_exp_iterations - 1)}: the weights "
                                   "became non-finite after this batch's update; training stopped; lower train.lr")
