"""The `probe` strategy's training (declared in `cml/strategies/probe.py`)."""

from __future__ import annotations

from cml.strategies._base import MultiLabelStrategy
from cml.strategies._frozen import FeatureCache, cached_embed


class ProbeStrategy(MultiLabelStrategy):
    def __init__(self, *, feature_cache: bool, **kwargs):
        kwargs["model"].backbone.requires_grad_(False)
        super().__init__(**kwargs)
        self.feature_cache = FeatureCache() if feature_cache else None

    def forward(self):
        self.core_model.backbone.eval()  # running statistics, no dropout: the same feature every pass
        embedding = cached_embed(self, "train" if self.is_training else "test")
        with self.autocast():
            outputs = self.core_model.classify(embedding)
        if self.is_training:
            self.mb_outputs = outputs
        return outputs["logits"]
