"""`strategy.replay`: the options the replay buffers (plugins of kind "replay") share; one replay
buffer per run, so one section serves them all. Torch-free: the buffers' declarations use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cml.core.schema import option


@dataclass
class ReplayOptions:
    size: int = option(2000, low=1, help="prs, ocdm, reservoir: buffer size in images (PRS: 2,000)")
    batch_ratio: float = option(1.0, low=0, high=64, help="mix batch: replay images drawn per incoming image (PRS: 1)")
    rho: float = option(
        -0.03,
        low=-1,
        high=1,
        help="prs, ocdm: target share of class i ~ n_i^rho (PRS: -0.03 COCOseq, 0.02 NUS-WIDEseq)",
    )
    per_class: int = option(20, low=1, help="herding: exemplars per class (KRT: 20 COCO, 2 VOC)")
    relabel: bool = option(
        False, help="stored images' targets widen to the classes up to the current step that they hold (KRT)"
    )
    mix: Literal["batch", "concat"] = option(
        "batch",
        help="batch: a replay batch joins each incoming batch; concat: the stored images "
        "join the step's training set (KRT)",
    )
    herding_repeats: Literal["never", "per_class"] = option(
        "never",
        help="herding: never: an image is stored once across all steps (KRT on COCO); per_class: "
        "once per class it is chosen for (KRT on VOC)",
    )
