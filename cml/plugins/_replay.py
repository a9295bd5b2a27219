"""The Avalanche plugin that mixes a replay buffer into training (any policy, any model).

How replay joins training (`strategy.replay.mix`):
- `batch`: each incoming batch is joined by min(|M|, batch_ratio * batch) items (rounded half
  up) drawn at random from the buffer, without repetition, as in PRS's code. The join happens
  in the data loader (the plugin wraps `strategy.dataloader` in `before_training_exp`, as
  Avalanche's own ReplayPlugin does), so `mb_x`, `mb_y` and `mb_rows` already hold the whole
  batch when the first iteration hook runs: every model and every other plugin (LwF, EWC,
  pseudo-labels) sees one batch, whatever the order of `strategy.plugins`.
- `concat`: the stored items join the step's training set (KRT), in
  `after_train_dataset_adaptation`.
When the buffer sees the stream:
- online (`train.online`) with `mix: batch`: each incoming batch is offered to the buffer after
  the gradient step (`after_training_iteration`), with the targets it came with, as PRS does.
- otherwise (epoch mode, or `mix: concat`): at the end of the step (`after_training_exp`), so
  that during step t the buffer holds steps < t only. Streaming buffers are then offered the
  step's samples once, in a random order; herding chooses its exemplars there.
Replayed images are read through `scenario.train_images(rows, targets)` (from the image cache
when `data.cache` is on); with `relabel`, a stored item's targets are its true labels over its
label window: from the first class of the step it was stored in up to the current step (KRT).
"""

from __future__ import annotations

import numpy as np
import torch

from cml.plugins._base import CmlPlugin
from cml.plugins._replay_buffer import ReplayBuffer
from cml.runtime import distributed


class MixedBatches:
    """A data loader whose batches are the wrapped loader's, each joined by a replay batch."""

    def __init__(self, loader, plugin: ReplayPlugin):
        self.loader = loader
        self.plugin = plugin

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y, rows in self.loader:
            # the global batch (every rank's slice, in rank order), so that every rank's buffer
            # takes the same decisions (torchrun; in one process this is the batch itself)
            # (one gather of rows and labels together, on the host)
            both = distributed.all_gather_cat(torch.cat([rows[:, None].double(), y.double()], dim=1)).numpy()
            self.plugin.incoming = (both[:, 0].astype(rows.numpy().dtype), both[:, 1:].astype(y.numpy().dtype))
            k = min(len(self.plugin.buffer), int(self.plugin.batch_ratio * len(self.plugin.incoming[0]) + 0.5))
            if k > 0:
                rx, ry, rr = self.plugin.replay_batch(k)
                x, y, rows = torch.cat([x, rx]), torch.cat([y, ry]), torch.cat([rows, rr])
                if getattr(self.loader, "pin_memory", False) and torch.cuda.is_available():  # as the loader pins
                    x, y, rows = x.pin_memory(), y.pin_memory(), rows.pin_memory()
            yield [x, y, rows]


class ReplayPlugin(CmlPlugin):
    def __init__(
        self,
        buffer: ReplayBuffer,
        scenario,
        *,
        batch_ratio: float,
        mix: str,
        relabel: bool,
        online: bool,
        partial_labels: bool,
    ):
        super().__init__()
        self.buffer = buffer
        self.scenario = scenario
        self.batch_ratio = batch_ratio
        self.mix = mix
        self.relabel = relabel
        self.partial_labels = partial_labels
        self.offer_per_batch = buffer.streaming and online and mix == "batch"
        self.step = None
        self.incoming: tuple[np.ndarray, np.ndarray] | None = None

    def first_class(self) -> int:
        """Start of the label window of the current step's samples (0 with `scenario.labels: full`)."""
        return self.step.classes[0] if self.partial_labels else 0

    def stored_targets(self, slots: np.ndarray) -> np.ndarray:
        if not self.relabel:
            return self.buffer.targets[slots]
        labels = np.asarray(self.scenario.data.train.labels[self.buffer.rows[slots]], dtype=np.float32)
        columns = np.arange(labels.shape[1])
        window = (columns >= self.buffer.first_class[slots, None]) & (columns < self.step.n_seen)
        return labels * window

    def replay_batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's slice of a global replay batch of k (every rank draws the same k slots)."""
        slots = self.buffer.draw(k)
        slots = slots[distributed.shard(len(slots))]
        images = self.scenario.train_images(self.buffer.rows[slots], self.stored_targets(slots))
        return torch.stack([images[i][0] for i in range(len(images))]), images.targets, images.rows

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        self.step = self.scenario.steps[strategy.experience.step]

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        if self.mix == "concat" and len(self.buffer):
            slots = np.arange(len(self.buffer))
            stored = self.scenario.train_dataset(self.buffer.rows[slots], self.stored_targets(slots))
            strategy.adapted_dataset = strategy.adapted_dataset.concat(stored)

    def before_training_exp(self, strategy, **kwargs):
        if self.mix == "batch":
            strategy.dataloader = MixedBatches(strategy.dataloader, self)

    def after_training_iteration(self, strategy, **kwargs):
        if self.offer_per_batch:
            self.buffer.offer(*self.incoming, self.first_class())

    def after_training_exp(self, strategy, **kwargs):
        self.incoming = None
        if not self.offer_per_batch:
            self.buffer.end_of_step(strategy, self.scenario, self.step, self.first_class(), strategy.train_mb_size)

    def checkpoint_state(self) -> dict:
        return self.buffer.state_dict()

    def load_checkpoint_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state)


def replay_plugin(cfg, scenario, buffer: ReplayBuffer) -> ReplayPlugin:
    r = cfg.strategy.replay
    return ReplayPlugin(
        buffer,
        scenario,
        batch_ratio=r.batch_ratio,
        mix=r.mix,
        relabel=r.relabel,
        online=cfg.train.online,
        partial_labels=cfg.scenario.labels == "partial",
    )
