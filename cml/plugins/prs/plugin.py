"""Partitioning Reservoir Sampling (Kim, Jeong, Kim, ECCV 2020), for multi-hot streams.

Exactly the paper's rules, with the reference implementation (cdjkim/PRS, `PRS_mlab`) followed
where the paper is silent (docs/replay.md lists each point):
- running class counts n_i; target partition p_i = n_i^rho / sum_j n_j^rho over the classes
  seen; quota m_i = M p_i. The sample's own labels are counted after its decision, as in
  `PRS_mlab.update`.
- sample-in, once the buffer is full: r_i = min(1, m_i / n_i), weights softmax(-n_i) over the
  sample's labels Y, stored with probability sum_i w_i r_i (a label never seen: r_i = 1; no
  label at all: never stored, as the reference's empty sum).
- sample-out: delta_i = l_i - p_i L; a class k ~ softmax(delta) over the classes in the buffer;
  among the items holding k, those holding the fewest under-filled classes (delta <= 0); among
  them the one whose removal leaves the smallest sum_i |l_i - p_i L| (the first slot on a tie).

The reference keeps per-class Python lists and, for every candidate, removes it, recomputes the
distance over all classes and puts it back. Here the counts l_i, the item-by-class matrix `held`
and each item's class indices are kept incrementally; sample-in probabilities are computed for a
whole batch at once (they depend only on the stream counts, which are known in advance within a
batch); and the distance after removing each candidate is read off its few labels, since
removing y leaves delta - y + p |y| (see `sample_out`).
"""

from __future__ import annotations

import numpy as np

from cml.plugins._replay_buffer import ReplayBuffer, target_partition


def sample_in_probability(n: np.ndarray, held: np.ndarray, p: np.ndarray, capacity: int) -> np.ndarray:
    """Per row: the probability that a sample with labels `held` enters a full buffer, given the
    stream counts `n` before it and the target partition `p` of those counts (rows: samples)."""
    n = np.asarray(n, dtype=np.float64)
    quota = capacity * p
    ratio = np.where(n > quota, quota / np.where(n > 0, n, 1.0), 1.0)  # min(1, m_i/n_i); 1 if unseen
    rarest = np.where(held, n, np.inf).min(-1, keepdims=True)
    weights = np.where(held, np.exp(np.where(held, rarest - n, 0.0)), 0.0)  # softmax(-n) over Y
    total = weights.sum(-1)
    return (weights * ratio).sum(-1) / np.where(total > 0, total, 1.0)


class PRSBuffer(ReplayBuffer):
    def __init__(self, capacity: int, num_classes: int, seed: int, rho: float):
        super().__init__(capacity, num_classes, seed)
        self.rho = rho
        # each item's classes as indices, padded with `num_classes` (a column that scores 0): the
        # candidates are scored on their few labels rather than on every class
        self.labels = np.full((capacity, 1), num_classes, dtype=np.int64)
        self.sizes = np.zeros(capacity, dtype=np.int64)

    def store(self, slot: int, row: int, target: np.ndarray, held: np.ndarray, first: int) -> None:
        super().store(slot, row, target, held, first)
        self.index_labels(slot, held)

    def index_labels(self, slot: int, held: np.ndarray) -> None:
        classes = np.flatnonzero(held)
        if len(classes) > self.labels.shape[1]:
            padding = np.full((self.capacity, len(classes) - self.labels.shape[1]), self.num_classes)
            self.labels = np.concatenate([self.labels, padding], 1)
        self.labels[slot] = self.num_classes
        self.labels[slot, : len(classes)] = classes
        self.sizes[slot] = len(classes)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for slot in range(self.size):
            self.index_labels(slot, self.held[slot])

    def offer(self, rows: np.ndarray, targets: np.ndarray, first: int = 0) -> None:
        held = np.asarray(targets) == 1
        fill = min(len(held), self.capacity - self.size)  # stored unconditionally while not full
        for j in range(fill):
            self.store(self.size, rows[j], targets[j], held[j], first)
        if fill < len(held):
            before = self.stream_counts + np.cumsum(held, 0) - held  # n_i seen before each sample
            before, held_in = before[fill:], held[fill:]
            p = target_partition(before, self.rho)
            s = sample_in_probability(before, held_in, p, self.capacity)
            for j in np.flatnonzero(self.rng.random(len(s)) < s):
                self.store(self.sample_out(p[j]), rows[fill + j], targets[fill + j], held_in[j], first)
        self.stream_counts += held.sum(0)
        self.seen += len(held)

    def sample_out(self, p: np.ndarray) -> int:
        """The slot to evict, given the target partition `p` (PRS's sample-out)."""
        if not self.counts.any():  # only label-less items (stored while filling): no class to draw
            return int(self.rng.integers(self.size))
        delta = self.counts - p * self.counts.sum()
        k = self.choose_class(delta)
        candidates = np.flatnonzero(self.held[: self.size, k])
        labels, sizes = self.labels[candidates], self.sizes[candidates]
        under = np.append(delta <= 0, False)[labels].sum(1)
        fewest = under == under.min()
        candidates, labels, sizes = candidates[fewest], labels[fewest], sizes[fewest]
        # Removing an item y with s labels leaves delta - y + p s: with a(s) = delta + p s, its
        # distance is sum_i |a_i(s)| plus, for each class i it holds, |a_i(s) - 1| - |a_i(s)|.
        after = delta + np.outer(np.arange(sizes.max() + 1), p)  # a(s) for s = 0 .. max
        held_term = np.zeros((len(after), self.num_classes + 1))
        held_term[:, :-1] = np.abs(after - 1) - np.abs(after)
        distance = np.abs(after).sum(1)[sizes] + held_term[sizes[:, None], labels].sum(1)
        return int(candidates[np.argmin(distance)])

    def choose_class(self, delta: np.ndarray) -> int:
        """k ~ softmax(delta) over the classes present in the buffer."""
        present = np.flatnonzero(self.counts)
        weights = np.exp(delta[present] - delta[present].max())
        cumulative = np.cumsum(weights)
        pick = np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right")
        return int(present[min(pick, len(present) - 1)])
