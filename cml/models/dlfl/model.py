"""DLFL (Jia et al., arXiv 2212.01461): one feature per label, found by cross-attention.

A learnable semantic query per class attends over the spatial positions of the backbone's last
feature map in a cascade of Semantic Spatial Cross-Attention (SSCA) blocks; the label features
that one block outputs are the next block's queries, and each label feature is scored by that
label's own classifier. Design choices (the papers give no layer sizes) are in docs/models.md.

Growth keeps old outputs: a label's query attends only over spatial positions (no attention
among labels), and every other layer acts on each label separately, so a new class's query and
classifier row change nothing for the classes already seen.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cml.models._base import MultiLabelModel
from cml.models._discriminative import DiscriminativeLoss
from cml.models._parts import GrowingVectors, PerLabelLinear, create_backbone, feature_map, freeze_unused_by_map

# Small queries (timm's std for learned tokens): they reach the attention through a LayerNorm,
# so their scale matters only in the residual stream, where the attended content then dominates.
QUERY_STD = 0.02


def sine_positions(height: int, width: int, dim: int, device) -> torch.Tensor:
    """DETR's fixed 2-D sine encoding, (H*W, dim): half the channels for y, half for x. No
    parameters, so any input size works."""
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freq  # (H, dim/4)
    xs = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freq
    y = torch.cat([ys.sin(), ys.cos()], 1)[:, None, :].expand(height, width, 2 * quarter)
    x = torch.cat([xs.sin(), xs.cos()], 1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([y, x], 2).reshape(height * width, dim)


class SSCABlock(nn.Module):
    """Multi-head cross-attention of label queries (B, C, D) over map positions (B, N, D), then a
    feed-forward layer, each a residual branch behind a LayerNorm (a pre-norm transformer decoder
    layer without self-attention among the labels)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_query, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, L, D/heads)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        q = self.split(self.query(self.norm_query(queries)))
        k = self.split(self.key(memory + positions))  # positions on keys only, as in DETR
        v = self.split(self.value(memory))
        # softmax over the positions; SDPA accumulates it in float32 under autocast
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = queries + self.drop(self.out(attended.transpose(1, 2).flatten(2)))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


class DLFL(MultiLabelModel):
    def __init__(
        self,
        backbone: str,
        pretrained: bool | str = False,
        num_classes: int = 0,
        embed_dim: int = 256,
        blocks: int = 2,
        heads: int = 4,
        ffn_dim: int = 512,
        dropout: float = 0.1,
        deep_supervision: bool = True,
        discriminative: DiscriminativeLoss | None = None,
    ):
        """Options as declared and checked in `cml/models/dlfl/__init__.py`."""
        super().__init__()
        self.deep_supervision = deep_supervision
        self.discriminative = discriminative
        self.backbone = create_backbone(backbone, pretrained)
        freeze_unused_by_map(self.backbone)  # the map is read, not timm's pooled feature
        self.embed_dim = embed_dim
        self.input_proj = nn.Linear(self.backbone.num_features, embed_dim)
        self.input_norm = nn.LayerNorm(embed_dim)
        self.blocks = nn.ModuleList(SSCABlock(embed_dim, heads, ffn_dim, dropout) for _ in range(blocks))
        self.reset_classifier(num_classes)

    @property
    def num_classes(self) -> int:
        return self.queries.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """New queries and classifiers (one per block with deep supervision, else the last only)."""
        device = self.input_proj.weight.device
        self.queries = GrowingVectors(self.embed_dim, num_classes, std=QUERY_STD).to(device)
        scored = len(self.blocks) if self.deep_supervision else 1
        self.classifiers = nn.ModuleList(PerLabelLinear(self.embed_dim, num_classes).to(device) for _ in range(scored))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def label_features(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Every block's label features, (B, C, D) each (block k's are block k+1's queries)."""
        fmap = feature_map(self.backbone, features)
        memory = self.input_norm(self.input_proj(fmap.flatten(2).transpose(1, 2)))  # (B, H*W, D)
        positions = sine_positions(fmap.shape[2], fmap.shape[3], self.embed_dim, fmap.device).to(memory.dtype)
        x = self.queries.weight.expand(fmap.shape[0], -1, -1)
        out = []
        for block in self.blocks:
            x = block(x, memory, positions)
            out.append(x)
        return out

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        label_features = self.label_features(features)[-1]
        return label_features if pre_logits else self.classifiers[-1](label_features)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        per_block = self.label_features(self.forward_features(x))
        scored = per_block[-len(self.classifiers) :]
        logits = [classifier(f) for classifier, f in zip(self.classifiers, scored)]
        return {"logits": logits[-1], "label_features": per_block[-1], "block_logits": logits[:-1]}

    def loss_terms(self, outputs: dict, targets: torch.Tensor, criterion) -> dict[str, torch.Tensor]:
        """Deep supervision: the same criterion on every earlier block's scores (DAFL's loss per
        step, equal weights); plus the discriminative loss when configured."""
        terms = {f"block{k}": criterion(logits, targets) for k, logits in enumerate(outputs["block_logits"])}
        if self.discriminative is not None:
            terms["discriminative"] = self.discriminative(outputs["label_features"], targets)
        return terms
