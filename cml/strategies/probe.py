"""Linear probing: the backbone stays as loaded (frozen, eval mode) and only the model's classifier
trains, step after step, on cached backbone features (`cml/strategies/_frozen.py`).

The usual frozen-backbone baseline of the pre-trained-model line of continual learning (e.g.
the "linear probe" rows of MULTI-LANE's and L3A's comparisons): it shows how much of a method's
score the pre-trained features alone give. Works with any model that splits into `embed(x)` and
`classify(embedding)` (the capability `embed_classify`: `linear`, `l3a`; another model is refused
with the config); everything the model's `classify` holds trains.

With the feature cache (`strategy.feature_cache`, default on) each image goes through the
backbone once per run; random augmentation is then refused (it would change the features).
One process only: the classifier is trained outside the DistributedDataParallel wrapper.
"""

from __future__ import annotations

from cml.core.registry import Strategy


def augmentation_message(train_cfg, strategy_name: str) -> str | None:
    """Cached frozen-backbone features need the same input every time: no random augmentation."""
    augment = {
        "train.hflip": train_cfg.hflip,
        "train.crop_scale": train_cfg.crop_scale,
        "train.cutout": train_cfg.cutout,
        "train.randaugment": train_cfg.randaugment,
    }
    on = [key for key, value in augment.items() if value]
    if on:
        return (
            f"{on[0]}: strategy {strategy_name} caches each image's frozen-backbone feature, which needs "
            f"the same input every time; turn off random augmentation ({', '.join(on)}) or set "
            "strategy.feature_cache: false"
        )
    return None


def check(cfg, options) -> str | None:
    return augmentation_message(cfg.train, "probe") if cfg.strategy.feature_cache else None


def build(cfg, scenario, plugins=(), **kwargs):
    from cml.core.errors import UserError
    from cml.runtime import distributed
    from cml.strategies._probe import ProbeStrategy

    if distributed.world() > 1:
        raise UserError(
            "strategy.name: probe runs in one process (its classifier trains outside DDP); run it without torchrun"
        )
    return ProbeStrategy(feature_cache=cfg.strategy.feature_cache, plugins=plugins, **kwargs)


DECLARATION = Strategy(
    build=build,
    check=check,
    needs=frozenset({"embed_classify"}),
    help="linear probing: only the classifier trains, on cached frozen-backbone features",
)
