"""Replay buffer policies on label vectors alone: PRS's rules on hand-computed cases, OCDM's greedy
step against a plain recomputation of the KL divergence, herding against a direct computation,
and the class distributions the policies keep on a long-tailed stream."""

import math

import numpy as np
import pytest
import torch

from bench.replay_throughput import long_tailed_stream  # the stream the bench measures
from cml.plugins._replay_buffer import partition_deviation, target_partition
from cml.plugins.herding.plugin import HerdingBuffer, herding_selection
from cml.plugins.ocdm.plugin import EPS, OCDMBuffer
from cml.plugins.prs.plugin import PRSBuffer, sample_in_probability
from cml.plugins.reservoir.plugin import ReservoirBuffer


class FixedDraws:
    """Stands in for the buffer's generator: returns the given uniforms in order."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self, size=None):
        if size is None:
            return self.values.pop(0)
        return np.array([self.values.pop(0) for _ in range(size)])


def multi_hot(label_sets, classes):
    y = np.zeros((len(label_sets), classes), dtype=np.float32)
    for i, s in enumerate(label_sets):
        y[i, list(s)] = 1
    return y


def test_target_partition_by_hand():
    # rho = -1: shares 1/10, 1/5, 1/1 normalised; an unseen class gets nothing
    assert target_partition(np.array([10, 5, 1, 0]), -1) == pytest.approx(np.array([0.1, 0.2, 1, 0]) / 1.3)
    assert target_partition(np.array([4, 1, 0]), 0) == pytest.approx([0.5, 0.5, 0])
    assert partition_deviation(np.array([3, 1, 0]), np.array([4, 1, 0]), 0) == pytest.approx((1 + 1) / 4)


def test_prs_sample_in_probability_by_hand():
    n = np.array([6.0, 2.0, 0.0, 0.0])  # stream counts before the sample; classes 2, 3 unseen
    held = multi_hot([{0, 1}, {0}, {1}, {2}, set()], 4).astype(bool)
    s = sample_in_probability(np.tile(n, (5, 1)), held, target_partition(np.tile(n, (5, 1)), 0.0), 4)
    # rho 0: p = (1/2, 1/2), quotas m = 2: r_0 = 2/6, r_1 = min(1, 2/2) = 1; unseen class: r = 1
    w0 = math.exp(-6) / (math.exp(-6) + math.exp(-2))  # softmax(-n) over {0, 1}
    assert s == pytest.approx([w0 / 3 + (1 - w0), 1 / 3, 1, 1, 0])
    # rho -1: p = (1/6, 1/2) / (2/3) = (1/4, 3/4), m = (1, 3): r_0 = 1/6, r_1 = 1
    s = sample_in_probability(n[None], held[:1], target_partition(n[None], -1.0), 4)
    assert s == pytest.approx([w0 / 6 + (1 - w0)])


def test_prs_counts_each_sample_after_its_own_decision():
    """Within a batch, sample j's probability uses the counts of samples 0..j-1 (as PRS_mlab)."""
    buffer = PRSBuffer(2, 3, seed=0, rho=0.0)
    buffer.offer(np.array([0, 1]), multi_hot([{0}, {1}], 3))  # fills the buffer
    buffer.rng = FixedDraws(0.9, 0.9, 0.9, 0.6)  # admits only when s = 1; then evicts class 1
    buffer.offer(np.array([2, 3, 4]), multi_hot([{2}, {2}, {2}], 3))
    # sample 2: class 2 unseen -> s = 1, stored; sample 3: n = (1,1,1), m = 2/3, r = 2/3 < 0.9:
    # out; sample 4: n_2 = 2, r = 1/3: out. The eviction for sample 2: delta = (0, 0), a class
    # drawn uniformly from {0, 1}: 0.6 -> class 1, its only holder is slot 1.
    assert buffer.stream_counts.tolist() == [1, 1, 3] and buffer.seen == 5
    assert buffer.rows.tolist() == [0, 2] and buffer.counts.tolist() == [1, 0, 1]


def full_prs_buffer():
    """5 slots: {0}, {0,1}, {0,1}, {1}, {2}; counts l = (3, 3, 1), L = 7. With rho = 0 and the
    stream counts below, p = 1/3 each, p L = 7/3, delta = (2/3, 2/3, -4/3): class 2 under-filled."""
    buffer = PRSBuffer(5, 3, seed=0, rho=0.0)
    buffer.offer(np.arange(5), multi_hot([{0}, {0, 1}, {0, 1}, {1}, {2}], 3))
    buffer.stream_counts[:] = [10, 5, 1]
    return buffer


def test_prs_sample_out_class_choice_by_hand():
    # softmax(delta) = (e^(2/3), e^(2/3), e^(-4/3)) / sum = (0.4683, 0.4683, 0.0634)
    e = np.exp([2 / 3, 2 / 3, -4 / 3])
    cumulative = np.cumsum(e / e.sum())
    delta = np.array([2 / 3, 2 / 3, -4 / 3])
    for u, expected in (
        (cumulative[0] - 1e-4, 0),
        (cumulative[0] + 1e-4, 1),
        (cumulative[1] - 1e-4, 1),
        (cumulative[1] + 1e-4, 2),
    ):
        buffer = full_prs_buffer()
        buffer.rng = FixedDraws(u)
        assert buffer.choose_class(delta) == expected


@pytest.mark.parametrize("u, evicted", [(0.1, 1), (0.5, 1), (0.99, 4)])
def test_prs_sample_out_evicts_the_item_by_hand(u, evicted):
    """Class 0 (u = 0.1): candidates {0}, {0,1}, {0,1} hold no under-filled class; removing {0}
    leaves l = (2,3,1), L = 6: distance 0 + 1 + 1 = 2; removing {0,1} leaves (2,2,1), L = 5:
    1/3 + 1/3 + 2/3 = 4/3, the smallest: slot 1 (first of the tie). Class 1 (u = 0.5): {1} gives
    (3,2,1): 1 + 0 + 1 = 2, so slot 1 again. Class 2 (u = 0.99): its only holder, slot 4."""
    buffer = full_prs_buffer()
    buffer.rng = FixedDraws(u)
    assert buffer.sample_out(target_partition(buffer.stream_counts, 0.0)) == evicted


def test_prs_offer_replaces_the_evicted_item_and_keeps_counts():
    buffer = full_prs_buffer()
    # a {2} sample: n_2 = 1, m_2 = 5/3: s = 1 (any draw < 1 admits it); class draw 0.1 -> class 0
    buffer.rng = FixedDraws(0.999, 0.1)
    buffer.offer(np.array([9]), multi_hot([{2}], 3))
    assert buffer.rows.tolist() == [0, 9, 2, 3, 4]
    assert buffer.counts.tolist() == [2, 2, 2] == buffer.held.sum(0).tolist()
    assert buffer.stream_counts.tolist() == [10, 5, 2]


def kl_after_removal(items: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL(p || q) of the items left after removing each one, recomputed from scratch."""
    seen = p > 0
    out = []
    for j in range(len(items)):
        counts = np.delete(items, j, 0).sum(0)[seen]
        q = (counts + EPS) / (counts.sum() + seen.sum() * EPS)
        out.append(float((p[seen] * np.log(p[seen] / q)).sum()))
    return np.array(out)


def test_ocdm_greedy_step_by_hand():
    """Memory {0}, {0}, {0,1}, incoming {1}; p = (1/2, 1/2). Removing a {0} leaves counts (2, 2):
    KL 0; removing {0,1} leaves (2, 1): 0.5 log(9/8) = 0.059; removing {1} leaves (3, 1):
    0.5 log(4/3) = 0.144. So one of the {0} items goes and the incoming {1} takes its slot."""
    buffer = OCDMBuffer(3, 2, seed=0, rho=0.0)
    buffer.offer(np.arange(3), multi_hot([{0}, {0}, {0, 1}], 2))
    buffer.stream_counts[:] = [4, 3]  # with the incoming sample: (4, 4), p = (1/2, 1/2)
    kl = kl_after_removal(multi_hot([{0}, {0}, {0, 1}, {1}], 2), np.array([0.5, 0.5]))
    assert kl == pytest.approx([0, 0, 0.5 * math.log(9 / 8), 0.5 * math.log(4 / 3)], abs=1e-3)
    buffer.offer(np.array([7]), multi_hot([{1}], 2))
    assert sorted(buffer.rows.tolist()) in ([0, 2, 7], [1, 2, 7])
    assert buffer.counts.tolist() == [2, 2] == buffer.held.sum(0).tolist()


def test_ocdm_greedy_matches_a_plain_recomputation():
    """Each removal is the argmin of KL(p || q) recomputed from scratch over what is left."""
    rng = np.random.default_rng(3)
    labels = (rng.random((40, 6)) < [0.6, 0.4, 0.3, 0.2, 0.1, 0.05]).astype(np.float32)
    labels[labels.sum(1) == 0, 5] = 1
    buffer = OCDMBuffer(12, 6, seed=0, rho=-0.5)
    buffer.offer(np.arange(12), labels[:12])
    for start in range(12, 40, 4):
        batch = labels[start : start + 4]
        items = np.concatenate([buffer.held[: buffer.size], batch == 1]).astype(np.float64)
        p = target_partition(buffer.stream_counts + batch.sum(0), -0.5)
        for _ in range(4):  # the plain greedy: the count vector it ends with
            items = np.delete(items, int(np.argmin(kl_after_removal(items, p))), 0)
        buffer.offer(np.arange(start, start + 4), batch)
        assert buffer.counts.tolist() == items.sum(0).astype(int).tolist()


def test_reservoir_keeps_a_uniform_sample():
    """Vitter's R: each of 40 samples ends in a 10-slot buffer with probability 1/4."""
    hits = np.zeros(40)
    for seed in range(400):
        buffer = ReservoirBuffer(10, 1, seed)
        for start in range(0, 40, 7):
            buffer.offer(np.arange(start, min(start + 7, 40)), np.ones((min(7, 40 - start), 1), np.float32))
        hits[buffer.rows] += 1
    # 400 draws of p = 1/4 per sample: sd 8.7; every sample within 5 sd of 100
    assert np.abs(hits - 100).max() < 44 and buffer.counts.tolist() == [10]


@pytest.fixture(scope="module")
def long_tail_buffers():
    labels = long_tailed_stream(50_000, 80, seed=0)
    buffers = {
        "prs": PRSBuffer(2000, 80, 0, -0.03),
        "ocdm": OCDMBuffer(2000, 80, 0, -0.03),
        "reservoir": ReservoirBuffer(2000, 80, 0),
    }
    rows = np.arange(len(labels))
    for buffer in buffers.values():
        for start in range(0, len(labels), 10):
            buffer.offer(rows[start : start + 10], labels[start : start + 10])
    return buffers


def test_prs_on_a_long_tailed_stream(long_tail_buffers):
    prs, reservoir = long_tail_buffers["prs"], long_tail_buffers["reservoir"]
    for buffer in (prs, reservoir):
        assert buffer.size == 2000 and buffer.counts.tolist() == buffer.held.sum(0).tolist()
    # Measured over seeds 0-3: PRS 0.21-0.25, reservoir 1.07-1.10. PRS cannot reach 0: its
    # admission quotas m_i = M p_i count items while the partition counts labels, and the head
    # class rides along with most tail samples. 0.35 is 40% above the worst seed, and still a
    # third of what reservoir's stream-proportional buffer shows.
    assert prs.deviation(-0.03) < 0.35 < reservoir.deviation(-0.03) / 3
    # The 20 rarest classes (about 200-600 samples each in the stream): reservoir keeps ~10 items
    # each (their stream share of 2,000), PRS ~35 (measured 34-36); at least 2.5x is asserted.
    assert prs.counts[-20:].mean() > 2.5 * reservoir.counts[-20:].mean()
    assert prs.counts[-20:].min() > reservoir.counts[-20:].max()


def test_ocdm_is_at_least_as_close_to_the_target_as_prs(long_tail_buffers):
    prs, ocdm = long_tail_buffers["prs"], long_tail_buffers["ocdm"]
    assert ocdm.size == 2000 and ocdm.counts.tolist() == ocdm.held.sum(0).tolist()
    assert ocdm.deviation(-0.03) <= prs.deviation(-0.03)  # measured: 0.008 against 0.23


def direct_herding(features: np.ndarray, m: int) -> list[int]:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    mu, chosen = f.mean(0), []
    for k in range(1, m + 1):
        best, best_distance = None, np.inf
        for i in range(len(f)):
            if i not in chosen:
                distance = np.linalg.norm(mu - (f[chosen].sum(0) + f[i]) / k)
                if distance < best_distance:
                    best, best_distance = i, distance
        chosen.append(best)
    return chosen


def test_herding_matches_a_direct_computation():
    features = np.random.default_rng(0).normal(size=(30, 6))
    assert herding_selection(torch.from_numpy(features).float(), 8) == direct_herding(features, 8)
    # by hand: normalised f = (1, 0), (0, 1), (.949, .316), (.894, -.447); mean mu = (.711, .217).
    # k=1: distances to mu .362, 1.057, .258, .689 -> 2; k=2: means with f0 (.974, .158): .270,
    # f1: .500, f3 (.921, -.065): .353 -> 0; k=3: f1 .230 < f3 .352 -> 1; then 3 (all, when fewer)
    f = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 1.0], [2.0, -1.0]])
    assert herding_selection(torch.from_numpy(f), 9) == [2, 0, 1, 3]


def test_herding_step_end_with_multi_label_images(monkeypatch):
    """Each new class picks its own exemplars among the images holding it; an image picked for two
    classes is stored once, with the label vector it had in the step."""

    class Step:
        classes = [2, 3]
        train_rows = np.array([10, 11, 12, 13, 14, 15])
        train_targets = multi_hot([{2}, {2, 3}, {2}, {3}, {3}, {2, 3}], 5)

    features = torch.from_numpy(np.random.default_rng(1).normal(size=(6, 4))).float()
    buffer = HerdingBuffer(per_class=2, num_classes=5, seed=0)
    monkeypatch.setattr(buffer, "step_features", lambda *args: features)
    buffer.end_of_step(None, None, Step, first=2, batch_size=4)
    holders = {c: np.flatnonzero(Step.train_targets[:, c]) for c in (2, 3)}
    expected = set()
    for c, rows in holders.items():
        expected |= set(rows[direct_herding(features[rows].numpy().astype(np.float64), 2)].tolist())
    assert sorted(buffer.rows[: buffer.size].tolist()) == sorted(Step.train_rows[list(expected)].tolist())
    for slot in range(buffer.size):
        j = Step.train_rows.tolist().index(buffer.rows[slot])
        assert buffer.targets[slot].tolist() == Step.train_targets[j].tolist()
        assert buffer.first_class[slot] == 2
    assert buffer.counts[2] >= 2 and buffer.counts[3] >= 2


def test_buffer_state_round_trip_continues_identically():
    labels = long_tailed_stream(3000, 12, seed=1)
    for make in (
        lambda: PRSBuffer(100, 12, 5, 0.02),
        lambda: OCDMBuffer(100, 12, 5, 0.02),
        lambda: ReservoirBuffer(100, 12, 5),
    ):
        a, b = make(), make()
        a.offer(np.arange(1500), labels[:1500])
        b.load_state_dict(a.state_dict())
        for buffer in (a, b):
            for start in range(1500, 3000, 10):
                buffer.offer(np.arange(start, start + 10), labels[start : start + 10])
        assert a.rows.tolist() == b.rows.tolist() and a.counts.tolist() == b.counts.tolist()


def test_prs_with_only_label_less_items_evicts_one_of_them():
    buffer = PRSBuffer(2, 2, seed=0, rho=0.0)
    buffer.offer(np.array([0, 1]), np.zeros((2, 2), np.float32))  # stored while filling
    buffer.offer(np.array([2]), multi_hot([{0}], 2))  # a new class: s = 1
    assert sorted(buffer.rows.tolist()) in ([0, 2], [1, 2]) and buffer.counts.tolist() == [1, 0]
