"""KRT's class-attention model (Dong et al., "Knowledge Restore and Transfer for Multi-label
Class-Incremental Learning", ICCV 2023; the "ICA" model of the authors' release, reference sheet
section 4b) on any timm backbone.

The backbone's last feature map goes through a 1x1 convolution to `embed_dim` channels and becomes
one token per position, plus a learned positional embedding sized from the configured input. One
shared query token `cls` and one task token per step: for step i, ONE class-attention block (CaiT
style, shared by all steps) reads [cls, task_i, patches] and its output at the `cls` position is
step i's token e_i; step i's head (LayerNorm + Linear) scores step i's classes from e_i. Logits are
the steps' heads concatenated. At each new step a task token and a head are added and the old ones
are frozen (no gradient, heads in eval mode), so they stay bit-identical; backbone, projection,
positional embedding, `cls` and the block keep training. The per-step tokens (B, steps, D) are in
`forward(x, full=True)["tokens"]` for token distillation (`tdl`).

Initialisation (`init`): `authors` as their release (reference sheet 4b): every Linear of the
class-attention block N(0, 0.01) with zero bias, the projection's weight Kaiming normal (fan out,
std sqrt(2 / D)), the first step's head N(0, 0.01) with zero bias; a head added later is a default
nn.Linear, as theirs. `torch` keeps torch's defaults everywhere (cml before issue 26). Tokens and
positional embedding are truncated normal 0.02 under both.

Deviations: the authors' model is TResNet-M only; here any timm backbone whose last features form a
map or tokens.
"""

from __future__ import annotations

import torch
from avalanche.models import DynamicModule
from torch import nn

from cml.models._base import MultiLabelModel
from cml.models._parts import Fp32Linear, create_backbone, feature_map, freeze_unused_by_map, head_size


class ClassAttentionBlock(nn.Module):
    """CaiT's class-attention layer (Touvron et al., 2021): only the first token queries, qkv
    without bias, scale head_dim^-0.5, residuals on the first token only, then LayerNorm + MLP x4."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> the updated first token (B, D)."""
        b, n, d = sequence.shape
        h = self.heads
        u = self.norm1(sequence)
        q = self.q(u[:, :1]).reshape(b, 1, h, d // h).transpose(1, 2)
        k, v = self.kv(u).reshape(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        attention = ((q * (d // h) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        x = sequence[:, 0] + self.proj((attention @ v).transpose(1, 2).reshape(b, d))
        return x + self.mlp(self.norm2(x))


def normal_linears(module: nn.Module, std: float = 0.01) -> None:
    """Every nn.Linear in `module` redrawn N(0, std^2) with zero bias (KRT's ICA initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TaskTokensAndHeads(DynamicModule):
    """One task token and one head per step; a training step that brings classes adds both and
    freezes the earlier ones. `init="authors"`: the first head N(0, 0.01), zero bias (later heads
    keep nn.Linear's default, as the authors' `add_model`)."""

    def __init__(self, dim: int, init: str = "authors"):
        super().__init__()
        self.dim = dim
        self.init = init
        self.tokens = nn.ParameterList()
        self.heads = nn.ModuleList()

    @property
    def num_classes(self) -> int:
        return sum(head[1].out_features for head in self.heads)

    def add_step(self, classes: int) -> None:
        device = self.tokens[0].device if len(self.tokens) else None
        for part in [*self.tokens, *self.heads.parameters()]:
            part.requires_grad_(False)
        self.heads.eval()
        token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, self.dim, device=device), std=0.02))
        self.tokens.append(token)
        head = nn.Sequential(nn.LayerNorm(self.dim), Fp32Linear(self.dim, classes))
        if self.init == "authors" and not len(self.heads):
            normal_linears(head)
        self.heads.append(head.to(device))

    def adaptation(self, experience) -> None:
        if self.training and head_size(experience) > self.num_classes:
            self.add_step(head_size(experience) - self.num_classes)

    def train(self, mode: bool = True):
        super().train(mode)
        for head in self.heads[:-1]:  # frozen heads stay in eval mode
            head.eval()
        return self


class KrtModel(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        image_size: int = 224,
        embed_dim: int = 384,
        heads: int = 8,
        init: str = "authors",
    ):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained)
        fmap = freeze_unused_by_map(self.backbone, image_size)  # the map's shape sizes the positions
        self.proj = nn.Conv2d(fmap.shape[1], embed_dim, 1)
        self.pos_embed = nn.Parameter(
            nn.init.trunc_normal_(torch.zeros(1, fmap.shape[2] * fmap.shape[3], embed_dim), std=0.02)
        )
        self.cls = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, embed_dim), std=0.02))
        self.block = ClassAttentionBlock(embed_dim, heads)
        if init == "authors":  # after torch's draws, so that `torch` draws exactly what it did before
            nn.init.kaiming_normal_(self.proj.weight, mode="fan_out", nonlinearity="leaky_relu")
            normal_linears(self.block)
        self.tasks = TaskTokensAndHeads(embed_dim, init)
        if num_classes:
            self.tasks.add_step(num_classes)

    @property
    def num_classes(self) -> int:
        return self.tasks.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        patches = self.proj(feature_map(self.backbone, self.forward_features(x))).flatten(2).transpose(1, 2)
        patches = patches + self.pos_embed
        cls = self.cls.expand(len(x), -1, -1)
        tokens = [
            self.block(torch.cat([cls, task.expand(len(x), -1, -1), patches], dim=1)) for task in self.tasks.tokens
        ]
        logits = [head(token) for head, token in zip(self.tasks.heads, tokens)]
        return {
            "logits": torch.cat(logits, dim=1) if logits else patches.new_zeros(len(x), 0),
            "label_features": None,
            "tokens": torch.stack(tokens, dim=1) if tokens else None,
        }
