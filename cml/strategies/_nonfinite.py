"""The non-finite guard (`train.nonfinite`): a NaN/inf loss stops the run or skips the batch, and
fp16 updates the gradient scaler skipped are counted (`skipped_updates`) and stop a run that
skips them persistently.

- "stop" raises TrainingDiverged naming the step, epoch and batch. The check stays on the device
  (no GPU sync per batch): the first bad batch and its loss are kept there and read every
  CHECK_EVERY batches and at the end of every epoch, where the weights are checked too (a finite
  loss followed by non-finite weights can only come from the epoch's last update).
- "skip" reads the flag at every batch (one sync) and skips that batch's backward and update;
  every rank skips the same batches (torchrun). Skipped batches count 0 in the epoch's mean loss.
- fp16 (`_precision.py`): the scaler skips an update whose gradients overflow, which a finite
  loss does not show. Its skips are counted on the device and read with the checks above; under
  "stop", PERSISTENT_SKIPS skipped updates in a row stop the run (the scale has then fallen by
  2^20: the gradients overflow at any scale); under "skip" they are counted only. A few skips
  while the scale settles at the start are normal.
Every read asks "is everything fine?" first, as one truth value, and reads details only when not.
"""

from __future__ import annotations

import torch

from cml.core.errors import TrainingDiverged
from cml.runtime import distributed

CHECK_EVERY = 32  # stop mode: batches between two reads of the device-side flags
PERSISTENT_SKIPS = 20  # fp16 updates skipped in a row that stop the run under "stop"
NONE = 2**62  # "no such batch" in the device-side batch indices


def batch_name(strategy, index: int) -> str:
    n = len(strategy.dataloader)
    return f"step {strategy.experience.step}, epoch {index // n + 1}/{strategy.train_epochs}, batch {index % n + 1}/{n}"


def weights_finite(model: torch.nn.Module) -> bool:
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class NonFiniteGuard:
    def __init__(self, policy: str):
        self.policy = policy
        self.skipped_batches = 0  # this step's batches skipped for a non-finite loss
        self.skip_update = False
        self.first: tuple[torch.Tensor, torch.Tensor] | None = None  # (first bad batch, its loss)
        self.updates: tuple[torch.Tensor, ...] | None = None  # (skipped, in a row, first persistent)

    def start_step(self) -> None:
        self.skipped_batches, self.first, self.updates = 0, None, None

    @property
    def skipped_updates(self) -> int:
        """This step's updates skipped by fp16's scaler (one read, after the step)."""
        return int(self.updates[0]) if self.updates is not None else 0

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
            raise TrainingDiverged(
                f"{batch_name(strategy, max(index - 1, 0))}: the weights became non-finite "
                "after this batch's update; skipping batches cannot repair them: lower train.lr"
            )
        self.skipped_batches += 1
        self.skip_update = True
        strategy.loss = torch.zeros_like(strategy.loss)
        return False

    def take_skip(self) -> bool:
        """Whether the coming optimizer step is to be skipped (once)."""
        skip, self.skip_update = self.skip_update, False
        return skip

    def count_update(self, skipped: torch.Tensor | None, index: int) -> None:
        """After an optimizer step: `skipped` from `Precision.step` (None without fp16's scaler)."""
        if skipped is None:
            return
        if self.updates is None:
            zero = torch.zeros((), dtype=torch.long, device=skipped.device)
            self.updates = (zero, zero, zero + NONE)
        count, in_a_row, first = self.updates
        in_a_row = (in_a_row + 1) * skipped
        first = torch.where((in_a_row >= PERSISTENT_SKIPS) & (first == NONE), index, first)
        self.updates = (count + skipped, in_a_row, first)

    def check(self, strategy, end_of_epoch: bool = False) -> None:
        device = strategy.device
        bad_loss = self.first[0] if self.first is not None else torch.tensor(-1, device=device)
        persistent = (
            self.updates[2] if self.updates is not None and self.policy == "stop" else torch.tensor(NONE, device=device)
        )
        # the first bad batch on any rank, so that every rank stops at the same check
        firsts = distributed.all_reduce_(
            torch.cat([torch.where(bad_loss < 0, NONE, bad_loss).view(1), persistent.view(1)]), "min"
        )
        if not bool((firsts == NONE).all()):
            self._stop(strategy, *(int(i) for i in firsts))
        if end_of_epoch and not weights_finite(strategy.model):
            raise TrainingDiverged(
                f"{batch_name(strategy, strategy.clock.train_exp_iterations - 1)}: the weights "
                "became non-finite after this batch's update; training stopped; lower train.lr"
            )

    def _stop(self, strategy, bad_loss: int, persistent: int) -> None:
        if bad_loss <= persistent:
            local = self.first
            value = float(local[1]) if local is not None and int(local[0]) == bad_loss else float("nan")
            raise TrainingDiverged(
                f"{batch_name(strategy, bad_loss)}: the loss is {value}; training stopped "
                "(train.nonfinite: stop); lower train.lr, or set train.nonfinite=skip "
                "to skip such batches"
            )
        raise TrainingDiverged(
            f"{batch_name(strategy, persistent)}: fp16's gradient scaler skipped "
            f"{PERSISTENT_SKIPS} updates in a row (the gradients overflow at every scale, the "
            "weights no longer change); training stopped (train.nonfinite: stop); lower "
            "train.lr, use train.amp=bf16, or set train.nonfinite=skip to count such updates only"
        )
