"""Reservoir sampling (Vitter's algorithm R): the buffer is a uniform sample of the stream so far.

The baseline PRS and OCDM improve on: class shares in the buffer follow the stream's, so tail
classes keep few items. Sample t (0-based) is stored while the buffer is not full; then it
replaces slot j ~ U{0..t} when j < M, i.e. with probability M / (t + 1). (The PRS code's own
reservoir draws j from U{0..t-1}, one short of Vitter's rule; cml follows Vitter.)
"""

from __future__ import annotations

import numpy as np

from cml.plugins._replay_buffer import ReplayBuffer


class ReservoirBuffer(ReplayBuffer):
    def offer(self, rows: np.ndarray, targets: np.ndarray, first: int = 0) -> None:
        held = np.asarray(targets) == 1
        index = self.seen + np.arange(len(held))  # t of each sample
        slots = np.floor(self.rng.random(len(held)) * (index + 1)).astype(np.int64)
        fill = min(len(held), self.capacity - self.size)
        slots[:fill] = self.size + np.arange(fill)
        for j in np.flatnonzero(slots < self.capacity):
            self.store(int(slots[j]), rows[j], targets[j], held[j], first)
        self.stream_counts += held.sum(0)
        self.seen += len(held)
