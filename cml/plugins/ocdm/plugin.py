"""OCDM (Liang and Li, "Optimizing Class Distribution in Memory for Multi-Label Online Continual
Learning", arXiv 2209.11469): the memory update as an optimisation, solved greedily.

When a batch B arrives at a full memory M, keep the |M| items of M u B whose class distribution
is closest to the target, by removing |B| items one at a time, each time the one whose removal
brings the memory's distribution closest to the target in KL divergence. Choices where the
paper's details were not confirmed (docs/replay.md):
- target: PRS's partition p_i = n_i^rho / sum_j n_j^rho over the classes seen, the stream counts
  n_i including the batch being placed (it is part of the stream the memory should represent);
- memory distribution: q_i = (l_i + eps) / (L + S eps) over the S classes seen, l_i the items
  holding class i and L = sum_i l_i; eps = 1e-3 keeps KL(p || q) finite when a class would
  leave the memory, where removing its last item costs p_i log(1 + 1/eps), a penalty so large
  that the last item of a class goes only when every candidate is one;
- a memory that is not full takes the whole batch when it fits; otherwise M u B is trimmed to
  capacity the same way; exact ties are broken at random.
Incremental: with g_i = p_i (log(l_i + eps) - log(l_i - 1 + eps)), removing item j changes
KL(p || q) by sum_{i in y_j} g_i + log(L - |y_j| + S eps) - log(L + S eps): one matrix-vector
product scores every candidate, and after a removal only the removed item's classes change g.
"""

from __future__ import annotations

import numpy as np

from cml.plugins._replay_buffer import ReplayBuffer, target_partition

EPS = 1e-3
TIE_BREAK = 1e-9  # random jitter far below any real difference in the score (>= ~1e-6 here)


def removal_gain(counts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """g_i = p_i (log(l_i + eps) - log(l_i - 1 + eps)): the KL cost of removing one item of class i."""
    safe = np.maximum(counts, 1).astype(np.float64)
    return np.where(counts > 0, p * (np.log(safe + EPS) - np.log(safe - 1 + EPS)), 0.0)


class OCDMBuffer(ReplayBuffer):
    def __init__(self, capacity: int, num_classes: int, seed: int, rho: float):
        super().__init__(capacity, num_classes, seed)
        self.rho = rho
        # `held` by class (C x slots) as numbers, then the incoming batch: one product scores all
        self.columns = np.zeros((num_classes, capacity), dtype=np.float32)
        self.sizes = np.zeros(capacity, dtype=np.int64)  # labels of each stored item

    def store(self, slot: int, row: int, target: np.ndarray, held: np.ndarray, first: int) -> None:
        super().store(slot, row, target, held, first)
        self.columns[:, slot] = held
        self.sizes[slot] = held.sum()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.columns[:, : self.capacity] = self.held.T
        self.sizes = self.held.sum(1)

    def offer(self, rows: np.ndarray, targets: np.ndarray, first: int = 0) -> None:
        held = np.asarray(targets) == 1
        self.stream_counts += held.sum(0)
        self.seen += len(held)
        fill = min(len(held), self.capacity - self.size)
        for j in range(fill):
            self.store(self.size, rows[j], targets[j], held[j], first)
        if fill == len(held):
            return
        incoming = np.arange(fill, len(held))
        kept = self.select(held[incoming])
        free = np.flatnonzero(~kept[: self.capacity])
        for slot, j in zip(free, incoming[kept[self.capacity :]]):
            self.store(int(slot), rows[j], targets[j], held[j], first)

    def select(self, incoming: np.ndarray) -> np.ndarray:
        """Greedy: which items of the (full) memory + `incoming` stay, as a mask, memory first."""
        n_items = self.capacity + len(incoming)
        if self.columns.shape[1] < n_items:
            self.columns = np.concatenate([self.columns[:, : self.capacity], incoming.T.astype(np.float32)], 1)
        columns = self.columns[:, :n_items]
        columns[:, self.capacity :] = incoming.T
        sizes = np.concatenate([self.sizes, incoming.sum(1)])
        counts = self.counts + incoming.sum(0)
        total = int(counts.sum())
        p = target_partition(self.stream_counts, self.rho)
        smoothing = (p > 0).sum() * EPS
        gain = removal_gain(counts, p)
        # float32 product (a float64 one would convert the whole matrix first); the jitter and the
        # updates below are in float64
        label_cost = (gain.astype(np.float32) @ columns).astype(np.float64) + self.rng.random(n_items) * TIE_BREAK
        kept = np.ones(n_items, dtype=bool)
        for _ in range(len(incoming)):
            size_cost = np.log(total - np.arange(self.num_classes + 1) + smoothing)
            j = int(np.argmin(label_cost + size_cost[sizes]))
            kept[j] = False
            label_cost[j] = np.inf
            classes = np.flatnonzero(columns[:, j])
            counts[classes] -= 1
            total -= len(classes)
            new_gain = removal_gain(counts[classes], p[classes])
            label_cost += (new_gain - gain[classes]) @ columns[classes]
            gain[classes] = new_gain
        return kept
