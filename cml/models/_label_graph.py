"""CSC's class-incremental graph convolution over per-label features, and the label co-occurrence
statistics that grow with each step. Works on any (B, C, D) per-label features: the `csc` model's
(`cml/models/csc/`), and, once merged, those of `krt` or `dlfl`.

Paper: Du et al., "Confidence Self-Calibration for Multi-Label Class-Incremental Learning",
ECCV 2024. Code read: Kaile-Du/CSC, `CSC/cigcn.py` (`GraphConvolution`, `CI_GCN`) and
`CSC/CSC.py` (`network_expansion`).

As their `GraphConvolution` (an ADD-GCN layer): a general graph A_g (C x C, learnt) mixes the
label features, x = v + LeakyReLU(W_g-conv(LeakyReLU(A_g v))); an image-specific graph
A_s = sigmoid(conv([global(x), x])) (C x C per image) mixes them again,
out = LeakyReLU(W_s(LeakyReLU(x A_s))). At a new step A_g gains rows and columns (old block
kept) and the specific graph's generator gains output rows, as their `network_expansion`.

Co-occurrence statistics (`LabelCooccurrence`): per step, from that step's partial labels, the
positives n_i and the joint positives m_ij are added; under partial labels a pair of classes of
different steps is never counted. The normalised graph is
A = D^-1/2 (P + I) D^-1/2 with P_ij = m_ij / n_i (i != j, 0 when n_i = 0), D = row sums of P + I.

Deviation: their new rows and columns of A_g start from nn.Conv1d's random initialisation; cml
starts them from this normalised co-occurrence graph (the paper's label-relationship prior), so
the statistics of each step's partial labels seed the graph the step learns from.
"""

from __future__ import annotations

import torch
from avalanche.models import DynamicModule
from torch import nn
from torch.nn import functional as F

from cml.models._parts import GrowingLinear, head_size


def normalised_cooccurrence(counts: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """D^-1/2 (P + I) D^-1/2 with P_ij = joint_ij / counts_i off the diagonal."""
    p = joint / counts.clamp(min=1)[:, None]
    p = p * (counts > 0)[:, None]
    p.fill_diagonal_(0)
    a = p + torch.eye(len(counts), dtype=p.dtype, device=p.device)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class LabelCooccurrence(DynamicModule):
    """n_i and m_ij as buffers (in every checkpoint), grown with the classes."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.register_buffer("counts", torch.zeros(0))
        self.register_buffer("joint", torch.zeros(0, 0))
        self.grow(num_classes)

    def grow(self, num_classes: int) -> None:
        extra = num_classes - len(self.counts)
        if extra > 0:
            self.counts = torch.cat([self.counts, self.counts.new_zeros(extra)])
            self.joint = F.pad(self.joint, (0, extra, 0, extra))

    def adaptation(self, experience) -> None:
        if self.training:
            self.grow(head_size(experience))

    def add(self, targets: torch.Tensor) -> None:
        """One step's training targets (rows of images, -1 = unknown)."""
        y = (targets[:, : len(self.counts)] == 1).to(self.joint)
        self.counts += y.sum(0)
        self.joint += y.T @ y

    def graph(self) -> torch.Tensor:
        return normalised_cooccurrence(self.counts, self.joint)


class GrowingAdjacency(DynamicModule):
    """A_g: a learnt C x C graph; new classes add rows and columns, the old block is kept."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(0, 0))
        self.grow(num_classes)

    def grow(self, num_classes: int) -> None:
        extra = num_classes - self.weight.shape[0]
        if extra > 0:  # the identity until the step's statistics seed it (`seed_new`)
            weight = F.pad(self.weight.data, (0, extra, 0, extra))
            weight[-extra:, -extra:] = torch.eye(extra, device=weight.device)
            self.weight = nn.Parameter(weight)

    def adaptation(self, experience) -> None:
        if self.training:
            self.grow(head_size(experience))

    @torch.no_grad()
    def seed_new(self, graph: torch.Tensor, first_new: int) -> None:
        """Rows and columns of the classes from `first_new` on take the co-occurrence graph's values."""
        self.weight[first_new:] = graph[first_new:]
        self.weight[:, first_new:] = graph[:, first_new:]

    def forward(self, v: torch.Tensor) -> torch.Tensor:  # v (B, C, D): mix the label nodes
        return torch.einsum("ij,bjd->bid", self.weight, v)


class ClassIncrementalGCN(nn.Module):
    """`prior`: the specific graph generator's new biases at logit(prior) (cml before issue 26);
    None, their code, keeps nn.Linear's default (as their Conv1d's), so that A_s starts near 0.5."""

    def __init__(self, dim: int, num_classes: int = 0, prior: float | None = None):
        super().__init__()
        self.general = GrowingAdjacency(num_classes)
        self.general_weight = nn.Linear(dim, dim)
        self.global_conv = nn.Linear(dim, dim)
        self.global_norm = nn.BatchNorm1d(dim)
        self.specific = GrowingLinear(2 * dim, num_classes, prior)  # rows of A_s, one per class
        self.specific_weight = nn.Linear(dim, dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """(B, C, D) label features -> (B, C, D), the graph convolution's output (no residual)."""
        act = F.leaky_relu
        x = v + act(self.general_weight(act(self.general(v), 0.2)), 0.2)
        summary = act(self.global_norm(self.global_conv(x.mean(1))), 0.2)  # (B, D)
        joined = torch.cat([summary[:, None].expand_as(x), x], dim=-1)  # (B, C, 2D)
        adjacency = torch.sigmoid(self.specific(joined))  # [b, j, i] = A_s[b, i, j]
        mixed = act(torch.einsum("bji,bid->bjd", adjacency, x), 0.2)
        return act(self.specific_weight(mixed), 0.2)
