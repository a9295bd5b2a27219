"""The training batches of a step, the same global batches in one process or in N (torchrun).

Each step's samples are put in a random order drawn from a generator seeded with (seed, step,
epoch), independent of any other random state, and cut into global batches of
`train.batch_size`; under torchrun each rank takes its contiguous slice of every global batch
(`cml.runtime.distributed.shard`), so global batch i holds the same images in 1 or N processes, in the
same order (online mode's stream order included). No sample is repeated to pad the ranks.
The last incomplete batch is dropped in online mode (PRS) and when some rank's slice of it
would hold fewer than 2 images (BatchNorm cannot train on one); otherwise it is kept, its
slices differing in size by at most one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from cml.protocols.steps import batch_count
from cml.runtime import distributed


class StepBatches(Sampler[list[int]]):
    def __init__(self, n: int, batch_size: int, seed: tuple[int, ...], drop_incomplete: bool):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch = 0
        self.n_batches = batch_count(n, batch_size, drop_incomplete, distributed.world())
        self.trained = min(n, self.n_batches * batch_size)  # images in the batches, per epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        seed = int(np.random.SeedSequence([*self.seed, self.epoch]).generate_state(1)[0])
        self.epoch += 1
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist()
        for b in range(self.n_batches):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[distributed.shard(len(batch))]
