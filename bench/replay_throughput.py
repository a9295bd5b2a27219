"""Buffer updates per second of each streaming replay policy, and how close each keeps the buffer
to PRS's target partition, on a long-tailed multi-label stream.

    python bench/replay_throughput.py                      # 50,000 samples, 80 classes, buffer 2,000
    python bench/replay_throughput.py --stream head-heavy --policies prs
    python bench/replay_throughput.py --labels Y.npy       # any N x C array of 0/1
    python bench/replay_throughput.py --reference 3000     # also the reference PRS on a prefix

Two generated streams by default (`--stream`): the long-tailed one, and a head-heavy one (1 to 4
labels per sample, the head class in 60% of them), the issue-20 stream: the head class's items are
most of the eviction candidates (`--head 0.9` makes it harder). Prints samples/s (over the whole
stream, and once the buffer is full), samples per CPU second (robust to a shared machine's load)
and the partition deviation sum_i |l_i - p_i L| / L at the end, p_i = n_i^rho / sum_j n_j^rho over
the classes seen. `--reference N` runs a port of the reference implementation (cdjkim/PRS,
`PRS_mlab`: per-class Python lists, each candidate removed, scored over all classes and put back)
on the first N samples, next to cml's PRS on the same prefix, so the speed-up and the deviations
are compared in one command. The stream is fed in batches of `--batch` (PRS's online batch: 10).
Herding is not a streaming policy (it picks exemplars from model features at the end of a step)
and is not measured here.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cml.plugins._replay_buffer import partition_deviation  # noqa: E402
from cml.plugins.ocdm.plugin import OCDMBuffer  # noqa: E402
from cml.plugins.prs.plugin import PRSBuffer  # noqa: E402
from cml.plugins.reservoir.plugin import ReservoirBuffer  # noqa: E402


def long_tailed_stream(n: int, classes: int, seed: int, head: float = 0.5, power: float = 1.1) -> np.ndarray:
    """Class i present with probability head * (i+1)^-power, independently (at least one label):
    about 2.2 labels per sample, the head class in half the samples, the tail in 0.4%."""
    rng = np.random.default_rng(seed)
    freq = head * (np.arange(classes) + 1.0) ** -power
    labels = rng.random((n, classes)) < freq
    empty = np.flatnonzero(~labels.any(1))
    labels[empty, rng.choice(classes, len(empty), p=freq / freq.sum())] = True
    return labels.astype(np.float32)


def head_heavy_stream(n: int, classes: int, seed: int, head: float = 0.6, power: float = 1.1) -> np.ndarray:
    """A harder stream for PRS: 1 to 4 labels per sample (uniformly), the head class in `head` of
    the samples, the other labels drawn without replacement from the other classes with
    probability ~ (i+1)^-power. The head class then fills about half the buffer, so every eviction
    that draws it has about a thousand candidates."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, classes), dtype=bool)
    sizes = rng.integers(1, 5, n)
    with_head = rng.random(n) < head
    labels[with_head, 0] = True
    weights = (np.arange(1, classes) + 1.0) ** -power
    keys = rng.random((n, classes - 1)) ** (1 / weights)  # weighted sampling without replacement
    order = np.argsort(-keys, 1)
    for extra in range(4):
        chosen = extra < sizes - with_head
        labels[np.flatnonzero(chosen), 1 + order[chosen, extra]] = True
    return labels.astype(np.float32)


STREAMS = ("long-tailed", "head-heavy")


def make_stream(name: str, args) -> np.ndarray:
    if name == "head-heavy":
        return head_heavy_stream(args.samples, args.classes, args.seed, args.head)
    return long_tailed_stream(args.samples, args.classes, args.seed)


class ReferencePRS:
    """PRS as `PRS_mlab` (cdjkim/PRS) runs it, ported to keep only the label vectors: per-class
    lists of slots; proportions over the classes present in the buffer, refreshed after every
    sample; sample-out removes each candidate, recomputes the distance over the classes present
    and puts the candidate back. Python's `random` and torch as in the original."""

    def __init__(self, capacity: int, num_classes: int, rho: float, seed: int):
        self.capacity, self.rho = capacity, rho
        self.cats = torch.zeros((capacity, num_classes), dtype=torch.long)
        self.slots = {c: [] for c in range(num_classes)}  # class -> slots holding it
        self.n = {c: 0.0 for c in range(num_classes)}
        self.proportion = {c: 0.0 for c in range(num_classes)}
        self.seen = 0
        random.seed(seed)

    def present(self):
        return [c for c, s in self.slots.items() if s]

    def offer(self, labels: torch.Tensor) -> None:
        for y in labels.long():
            keys = (y == 1).nonzero().flatten().tolist()
            if self.seen < self.capacity:
                self.put(self.seen, y)
            elif self.sample_in(keys):
                self.put(self.sample_out(), y)
            self.seen += 1
            for k in keys:
                self.n[k] += 1
            present = self.present()
            total = sum(self.n[c] ** self.rho for c in present)
            for c in present:
                self.proportion[c] = self.n[c] ** self.rho / total

    def sample_in(self, keys) -> bool:
        probs, negn = [], []
        for k in keys:
            m, n = self.capacity * self.proportion[k], self.n[k]
            probs.append(m / n if n > m else 1)
            negn.append(-n)
        s = torch.sum(torch.tensor(probs) * torch.softmax(torch.tensor(negn), 0)).item()
        return random.choices([True, False], [s, 1 - s])[0]

    def put(self, slot: int, y: torch.Tensor) -> None:
        self.cats[slot] = y
        self.point(slot)

    def point(self, slot: int) -> None:
        for k in (self.cats[slot] == 1).nonzero().flatten().tolist():
            self.slots[k].append(slot)

    def unpoint(self, slot: int) -> None:
        for k in (self.cats[slot] == 1).nonzero().flatten().tolist():
            self.slots[k].pop(self.slots[k].index(slot))

    def deltas(self):
        total = sum(len(self.slots[c]) for c in self.present())
        return {c: len(self.slots[c]) - self.proportion[c] * total for c in self.present()}

    def diff(self) -> float:
        return sum(abs(d) for d in self.deltas().values())

    def sample_out(self) -> int:
        deltas = self.deltas()
        probs = torch.softmax(torch.tensor(list(deltas.values())), 0)
        k = random.choices(list(deltas), weights=probs.tolist(), k=1)[0]
        mask = torch.zeros(self.capacity, dtype=torch.bool)
        mask[self.slots[k]] = True
        query = torch.zeros(self.cats.shape[1], dtype=torch.long)
        query[[c for c, d in deltas.items() if d <= 0]] = 1
        scores = ((1 - self.cats[mask]) * query).sum(1)
        in_mask = mask.nonzero().flatten().tolist()
        candidates = [in_mask[i] for i in (scores == scores.max()).nonzero().flatten().tolist()]
        best = (candidates[0], self.capacity)
        for slot in candidates:
            self.unpoint(slot)
            d = self.diff()
            if d < best[1]:
                best = (slot, d)
            self.point(slot)
        self.unpoint(best[0])
        return best[0]

    def counts(self) -> np.ndarray:
        return self.cats.sum(0).numpy()


def feed(buffer, labels: np.ndarray, batch: int, cpu: list | None = None) -> float:
    """Wall seconds to offer `labels`; the CPU seconds (this process's) are appended to `cpu`: on a
    shared machine they stay near the quiet machine's time while wall time stretches with load."""
    rows = np.arange(len(labels))
    start, start_cpu = time.perf_counter(), time.process_time()
    for s in range(0, len(labels), batch):
        buffer.offer(rows[s : s + batch], labels[s : s + batch])
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", help="an N x C .npy array of 0/1 (default: a generated long-tailed stream)")
    parser.add_argument(
        "--stream",
        nargs="+",
        choices=STREAMS,
        default=list(STREAMS),
        help="generated streams to run (default: both); long-tailed: each class independently "
        "with probability 0.5 (i+1)^-1.1; head-heavy: 1-4 labels, the head class in 60%%",
    )
    parser.add_argument("--head", type=float, default=0.6, help="head-heavy: share of samples with the head class")
    parser.add_argument(
        "--policies", nargs="+", choices=["prs", "ocdm", "reservoir"], default=["prs", "ocdm", "reservoir"]
    )
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rho", type=float, default=-0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference",
        type=int,
        default=0,
        metavar="N",
        help="also run the reference PRS on the first N samples (slow: ~20 samples/s once full)",
    )
    args = parser.parse_args()
    streams = (
        {Path(args.labels).name: np.load(args.labels)}
        if args.labels
        else {name: make_stream(name, args) for name in args.stream}
    )
    for name, labels in streams.items():
        run_stream(name, labels.astype(np.float32), args)


def run_stream(name: str, labels: np.ndarray, args) -> None:
    n, c = labels.shape
    per_class = labels.sum(0)
    print(
        f"\n{name} stream: {n} samples, {c} classes, {labels.sum(1).mean():.2f} labels/sample "
        f"({int(labels.sum(1).min())} to {int(labels.sum(1).max())}), class counts {int(per_class.max())} (head, "
        f"{per_class.max() / n:.0%} of the samples) to {int(per_class[per_class > 0].min())} (tail); "
        f"buffer {args.size}, batch {args.batch}, rho {args.rho}"
    )
    print(f"{'policy':<26}{'samples':>9}{'samples/s':>12}{'once full':>12}{'per CPU s':>12}{'deviation':>11}")
    policies = {
        "prs": lambda: PRSBuffer(args.size, c, args.seed, args.rho),
        "ocdm": lambda: OCDMBuffer(args.size, c, args.seed, args.rho),
        "reservoir": lambda: ReservoirBuffer(args.size, c, args.seed),
    }
    for policy in args.policies:
        buffer, cpu = policies[policy](), []
        fill = feed(buffer, labels[: args.size], args.batch, cpu)
        rest = feed(buffer, labels[args.size :], args.batch, cpu)
        print(
            f"{policy:<26}{n:>9}{n / (fill + rest):>12,.0f}{(n - args.size) / max(rest, 1e-9):>12,.0f}"
            f"{n / sum(cpu):>12,.0f}{buffer.deviation(args.rho):>11.4f}"
        )
    if args.reference:
        prefix = labels[: args.reference]
        fill, rest = prefix[: args.size], prefix[args.size :]
        ours = PRSBuffer(args.size, c, args.seed, args.rho)
        ours_fill = feed(ours, fill, args.batch)
        ours_rest = feed(ours, rest, args.batch)
        reference = ReferencePRS(args.size, c, args.rho, args.seed)
        start = time.perf_counter()
        reference.offer(torch.from_numpy(fill))
        full = time.perf_counter()
        reference.offer(torch.from_numpy(rest))
        reference_rest = time.perf_counter() - full
        deviation = partition_deviation(reference.counts(), prefix.sum(0), args.rho)
        print(f"\nfirst {len(prefix)} samples ({len(rest)} once the buffer is full):")
        print(f"{'':26}{'samples/s':>12}{'once full':>12}{'deviation':>11}")
        print(
            f"{'prs (cml)':<26}{len(prefix) / (ours_fill + ours_rest):>12,.0f}{len(rest) / ours_rest:>12,.0f}"
            f"{ours.deviation(args.rho):>11.4f}"
        )
        print(
            f"{'prs (reference port)':<26}{len(prefix) / (time.perf_counter() - start - 0):>12,.1f}"
            f"{len(rest) / reference_rest:>12,.1f}{deviation:>11.4f}"
        )
        print(f"speed-up once full: {ours_rest and reference_rest / ours_rest:,.0f}x")


if __name__ == "__main__":
    main()
