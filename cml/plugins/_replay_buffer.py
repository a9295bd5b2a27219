"""Replay storage shared by the buffer policies (prs, ocdm, reservoir, herding): plain numpy.

A buffer holds, per slot, the row of the image in `scenario.data.train`, the label vector the
sample had when it was stored (its `targets` in the stream, all classes of the dataset) and the
first class of its label window (for KRT's relabelling), never a copy of the image: memory is
O(capacity x classes). Bookkeeping the policies share is kept incrementally: `held` (slot x class,
the classes a stored item holds, target == 1) and `counts` (l_i, items holding class i), and the
stream's class counts n_i (`stream_counts`). Each buffer owns a seeded numpy Generator whose
state is part of `state_dict()`, so a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json

import numpy as np
import torch


def target_partition(n: np.ndarray, rho: float) -> np.ndarray:
    """PRS's target shares p_i = n_i^rho / sum_j n_j^rho over the classes seen (n_i > 0), along
    the last axis; unseen classes get 0 (n^rho is undefined at 0 for rho < 0)."""
    n = np.asarray(n, dtype=np.float64)
    seen = n > 0
    power = np.where(seen, np.power(np.where(seen, n, 1.0), rho), 0.0)
    total = power.sum(-1, keepdims=True)
    return power / np.where(total > 0, total, 1.0)


def partition_deviation(counts: np.ndarray, stream_counts: np.ndarray, rho: float) -> float:
    """sum_i |l_i - p_i L| / L: how far a buffer's class counts are from the target partition."""
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(np.abs(counts - target_partition(stream_counts, rho) * total).sum() / total)


class ReplayBuffer:
    """Fixed-capacity storage and the stream statistics; subclasses decide what gets in and out.

    `streaming` buffers (prs, ocdm, reservoir) are offered the stream with `offer`; the others
    (herding) choose their items at the end of a step (`end_of_step`)."""

    streaming = True

    def __init__(self, capacity: int, num_classes: int, seed: int):
        self.capacity = capacity
        self.num_classes = num_classes
        self.rows = np.zeros(capacity, dtype=np.int64)
        self.targets = np.zeros((capacity, num_classes), dtype=np.float32)
        self.first_class = np.zeros(capacity, dtype=np.int64)
        self.held = np.zeros((capacity, num_classes), dtype=bool)
        self.counts = np.zeros(num_classes, dtype=np.int64)
        self.stream_counts = np.zeros(num_classes, dtype=np.int64)
        self.seen = 0  # samples offered so far
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def store(self, slot: int, row: int, target: np.ndarray, held: np.ndarray, first: int) -> None:
        """Put a sample in `slot` (the next free one, or an occupied one it replaces)."""
        if slot < self.size:
            self.counts -= self.held[slot]
        else:
            assert slot == self.size < self.capacity
            self.size += 1
        self.rows[slot] = row
        self.targets[slot] = target
        self.held[slot] = held
        self.first_class[slot] = first
        self.counts += held

    def offer(self, rows: np.ndarray, targets: np.ndarray, first: int = 0) -> None:
        """A batch of the stream, in stream order: `rows` of data.train with their `targets`."""
        raise NotImplementedError

    def end_of_step(self, strategy, scenario, step, first: int, batch_size: int) -> None:
        """Epoch mode (and `mix: concat`): the step's samples are offered once, at the end of the
        step, in a random order drawn from the buffer's generator, in batches of `batch_size`."""
        order = self.rng.permutation(len(step.train_rows))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            self.offer(step.train_rows[chosen], step.train_targets[chosen], first)

    def draw(self, k: int) -> np.ndarray:
        """k distinct slots, uniformly at random (PRS's replay batch: random.sample)."""
        return self.rng.choice(self.size, size=min(k, self.size), replace=False)

    def deviation(self, rho: float) -> float:
        return partition_deviation(self.counts, self.stream_counts, rho)

    def state_dict(self) -> dict:
        """Tensors, numbers and a string: what `torch.load(weights_only=True)` accepts."""
        n = self.size
        return {
            "rows": torch.from_numpy(self.rows[:n].copy()),
            "targets": torch.from_numpy(self.targets[:n].copy()),
            "first_class": torch.from_numpy(self.first_class[:n].copy()),
            "stream_counts": torch.from_numpy(self.stream_counts.copy()),
            "seen": self.seen,
            "rng": json.dumps(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict) -> None:
        n = len(state["rows"])
        self.size = n
        self.rows[:n] = state["rows"].numpy()
        self.targets[:n] = state["targets"].numpy()
        self.first_class[:n] = state["first_class"].numpy()
        self.held[:] = False
        self.held[:n] = self.targets[:n] == 1
        self.counts = self.held.sum(0).astype(np.int64)
        self.stream_counts = state["stream_counts"].numpy().astype(np.int64)
        self.seen = int(state["seen"])
        self.rng.bit_generator.state = json.loads(state["rng"])
