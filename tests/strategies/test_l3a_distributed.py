"""L3A's statistics under torchrun: 2 gloo processes, each with its slice of every global batch,
end with the one-process statistics, bit for bit (the slices are gathered, so every rank adds the
same global batch in the same order), pseudo-labels and sample weights included."""

import os
import socket
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cml.models._analytic import AnalyticClassifier, class_weights
from cml.runtime import distributed
from cml.strategies._l3a import learn_global_batch

OPTIONS = SimpleNamespace(pseudo_labels=True, threshold=0.55, weighted=True)
BATCHES, BATCH, DIM, HIDDEN, N_OLD, N_SEEN = 4, 10, 6, 16, 3, 5


def make_model():
    torch.manual_seed(0)
    expansion = torch.randn(HIDDEN, DIM)
    head = AnalyticClassifier(HIDDEN, ridge=1.0, num_classes=N_SEEN)
    head.accumulate(torch.rand(30, HIDDEN), (torch.rand(30, N_SEEN) < 0.3).float(), torch.ones(30))
    head.solve()  # an earlier step's solution, for the pseudo-labels
    head.add_counts((torch.rand(50, N_SEEN) < 0.3).float())
    return SimpleNamespace(expand=lambda e: torch.relu(e @ expansion.T), analytic=head)


def data():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(BATCHES, BATCH, DIM, generator=generator)
    targets = torch.zeros(BATCHES, BATCH, N_SEEN)
    targets[..., N_OLD:] = (torch.rand(BATCHES, BATCH, N_SEEN - N_OLD, generator=generator) < 0.5).float()
    return features, targets


def learn(model, part: slice = slice(None)):
    features, targets = data()
    per_class = class_weights(model.analytic.counts)
    for b in range(BATCHES):
        learn_global_batch(model, features[b, part], targets[b, part], per_class, N_OLD, OPTIONS)
    return model.analytic


def worker(rank: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    head = learn(make_model(), distributed.shard(BATCH))
    if rank == 1:
        torch.save({"gram": head.gram, "cross": head.cross}, out)
    dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    one = learn(make_model())
    assert one.cross[:, :N_OLD].abs().sum() > 0  # pseudo-labels did add old-class positives
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "rank1.pt")
    mp.spawn(worker, args=(port, out), nprocs=2)
    two = torch.load(out)
    assert torch.equal(two["gram"], one.gram) and torch.equal(two["cross"], one.cross)


def test_every_image_is_learnt_once_in_one_or_two_processes(monkeypatch):
    from cml.strategies._l3a import every_image

    assert every_image(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    monkeypatch.setattr(distributed, "world", lambda: 2)
    ranks = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        ranks.append(every_image(7, 3))
    assert ranks == [[[0], [3, 4]], [[1, 2], [5, 6]]]  # the last single image joins the batch before it
