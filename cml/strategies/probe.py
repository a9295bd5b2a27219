"""Linear probing: the backbone stays as loaded (frozen, eval mode) and only the model's classifier
trains, step after step, on cached backbone features (`cml/strategies/_frozen.py`).

The usual frozen-backbone baseline of the pre-trained-model line of continual learning (e.g.
the "linear probe" rows of MULTI-LANE's and L3A's comparisons): it shows how much of a method's
score the pre-trained features alone give. Works with any model that splits into `embed(x)` and
`classify(embedding)` (`linear`, `l3a`); everything the model's `classify` holds trains.

With the feature cache (`strategy.feature_cache`, default on) each image goes through the
backbone once per run; random augmentation is then refused (it would change the features).
One process only: the classifier is trained outside the DistributedDataParallel wrapper.
"""

from __future__ import annotations

from cml import distributed
from cml.errors import UserError
from cml.strategies import STRATEGIES
from cml.strategies._base import MultiLabelStrategy
from cml.strategies._frozen import FeatureCache, cached_embed, require_deterministic_inputs


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


@STRATEGIES.register("probe")
def probe(scenario, cfg, **kwargs) -> ProbeStrategy:
    if not hasattr(kwargs["model"], "classify"):
        raise UserError(f"model.name: strategy probe needs a model with embed/classify (linear, l3a), "
                        f"got {cfg.model.name!r}")
    if distributed.world() > 1:
        raise UserError("strategy.name: probe runs in one process (its classifier trains outside DDP); "
                        "run it without torchrun")
    if cfg.strategy.feature_cache:
        require_deterministic_inputs(cfg.train, "probe")
    return ProbeStrategy(feature_cache=cfg.strategy.feature_cache, **kwargs)
