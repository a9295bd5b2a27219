"""Frozen-backbone feature caching: each image's backbone feature is computed once per run.

When the backbone no longer trains (L3A after its base step; linear probing throughout), every
later pass over an image (the next epochs, a later step that selects it again, the test set that
is scored again after every step) would recompute the same feature. `FeatureCache` keeps the
pooled feature of every (split, row) it has seen, on the CPU in float32, and the strategy calls
the backbone only for the rows of a batch it has not seen yet.

It is exact only when an image enters the backbone the same way every time: no random
augmentation, the backbone in eval mode (BatchNorm's running statistics, no dropout), its weights
unchanged. The strategies that use it check the first (`require_deterministic_inputs`) and
freeze the backbone before the first cached pass. The cache lives in memory for one process and
one run (a resumed run starts it afresh); a model needs `embed(x)` and `classify(embedding)`.
"""

from __future__ import annotations

import torch


class FeatureCache:
    def __init__(self):
        self.features: dict[str, torch.Tensor] = {}
        self.filled: dict[str, torch.Tensor] = {}
        self.computed = 0  # images that went through the backbone (for the bench)

    def _room(self, split: str, rows: torch.Tensor, dim: int) -> None:
        size = int(rows.max()) + 1
        old = self.features.get(split)
        if old is not None and len(old) >= size:
            return
        size = max(size, 2 * len(old)) if old is not None else size
        features, filled = torch.zeros(size, dim), torch.zeros(size, dtype=torch.bool)
        if old is not None:
            features[: len(old)], filled[: len(old)] = old, self.filled[split]
        self.features[split], self.filled[split] = features, filled

    def __call__(self, split: str, rows: torch.Tensor, images: torch.Tensor, embed) -> torch.Tensor:
        """The features of `rows` of `split`, with `embed(images[missing])` for the unseen ones."""
        rows = rows.cpu()
        known = torch.zeros(len(rows), dtype=torch.bool)
        if split in self.filled:
            inside = rows < len(self.filled[split])
            known[inside] = self.filled[split][rows[inside]]
        missing = (~known).nonzero().squeeze(1)
        if len(missing):
            new = embed(images[missing.to(images.device)]).float()
            self._room(split, rows, new.shape[1])
            self.features[split][rows[missing]] = new.cpu()
            self.filled[split][rows[missing]] = True
            self.computed += len(missing)
        return self.features[split][rows].to(images.device)


def cached_embed(strategy, split: str) -> torch.Tensor:
    """The current minibatch's frozen features, through the strategy's cache when it has one."""
    model = strategy.core_model
    with torch.no_grad(), strategy.autocast():
        if strategy.feature_cache is None:
            return model.embed(strategy.mb_x).float()
        return strategy.feature_cache(split, strategy.mb_rows, strategy.mb_x, model.embed)
