"""L3A: exemplar-free multi-label class-incremental learning by closed-form (analytic) updates on a
frozen backbone, with old-class pseudo-labels and per-image weights against class imbalance.

Paper: Zhang et al., "L3A: Label-Augmented Analytic Adaptation for Multi-Label Class Incremental
Learning", ICML 2025. Code read: scut-zx/L3A, `MultiLabelIncremental_L3A.py` (`_train_task`,
`weight_cls_align`, `weight_IL_align`), configs `l3a_tresnetm_coco.yaml` / `_voc.yaml`.

Per step, as their code:
1. first step only, `strategy.l3a.base_epochs` > 0: the backbone and a linear head train by
   gradient (their: 1 epoch, ASL, Adam + OneCycle at base_lr); then the backbone is frozen for
   good (eval mode, no gradient);
2. the step's label counts are added to the class counts (labels as given, before pseudo-labels);
3. one pass over the step's images without augmentation: the frozen feature, expanded by the
   random buffer layer; old classes whose sigmoid(analytic output) passes the threshold become
   positives (pseudo-label module, from the classifier as it stood before this step); each image
   weighted (`cml.models._analytic`); the statistics accumulate;
4. the classifier is solved in closed form. No image is stored, no gradient after step 1.

torchrun: each rank embeds its slice of every global batch; the slices' features and targets are
gathered in rank order (`all_gather_cat`) so that every rank adds the same global batch, in the
same order, as one process would: the statistics are the one-process statistics (bit-identical
for identical features), not a sum of per-rank partial sums rounded differently. Class counts
come from the step's whole target table, identical on every rank. The authors' code counts per
rank without reducing them.

Deviations: the pseudo-label rule is cml's `pseudo_labelled` (>= threshold, only where the
target is 0; theirs is > and overwrites any target); no plugins (L3A is exemplar-free and has its
own pseudo-labels); random augmentation is refused, as in their code (Resize + ToTensor only),
which is also what makes the frozen features cacheable (`cml/strategies/_frozen.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Strategy
from cml.core.schema import option
from cml.strategies.probe import augmentation_message


@dataclass
class L3aOptions:
    base_epochs: int = option(
        1,
        low=0,
        help="l3a: epochs of gradient training of the backbone (ASL or train.loss, "
        "linear head) on the first step before it is frozen (L3A's code: 1)",
    )
    pseudo_labels: bool = option(True, help="l3a: old classes scored above threshold become positives")
    threshold: float = option(
        0.7,
        low=0,
        high=1,
        help="l3a: pseudo-label threshold on the sigmoid of the analytic classifier's output (L3A: 0.7)",
    )
    weighted: bool = option(True, help="l3a: per-image weights against class imbalance (L3A's rectifier_fac)")


def check(cfg, options: L3aOptions) -> str | None:
    if cfg.strategy.plugins:
        return "strategy.plugins: strategy l3a is exemplar-free with its own pseudo-labels; expected no plugins"
    if options.pseudo_labels and cfg.scenario.labels != "partial":  # as the pseudo plugin's `requires`
        return (
            f"strategy.l3a.pseudo_labels: needs scenario.labels: partial, got {cfg.scenario.labels} (there an old "
            "class's 0 is a true negative that a pseudo-label would turn into a positive); "
            "set strategy.l3a.pseudo_labels: false"
        )
    # as probe's: only the cache needs one input per image (before, the message advised turning
    # the cache off and still refused when it was off)
    return augmentation_message(cfg.train, "l3a") if cfg.strategy.feature_cache else None


def build(cfg, scenario, plugins=(), **kwargs):
    from cml.strategies._l3a import L3AStrategy

    return L3AStrategy(
        options=cfg.strategy.l3a,
        steps=scenario.steps,
        feature_cache=cfg.strategy.feature_cache,
        plugins=plugins,
        **kwargs,
    )


DECLARATION = Strategy(
    build=build,
    options=L3aOptions,
    check=check,
    needs=frozenset({"embed_classify", "analytic"}),
    help="closed-form analytic classifier on a frozen backbone, exemplar-free (L3A)",
)
