"""asl: the asymmetric loss (Ridnik et al., ICCV 2021), the loss of KRT's recipe; summed over the
batch as the authors do (loss.py has the details)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.registry import Loss
from cml.core.schema import option


@dataclass
class AslOptions:
    gamma_neg: float = option(4.0, low=0)
    gamma_pos: float = option(0.0, low=0)
    clip: float = option(0.05, low=0, high=1, help="probability margin shifted off easy negatives")
    focal_grad: bool = option(
        False,
        help="differentiate the focal weight (1 - p_t)^gamma too; false: detached, "
        "as the ASL project's default and KRT",
    )


def build(options: AslOptions):
    from functools import partial

    from cml.losses.asl.loss import asymmetric_loss

    return partial(
        asymmetric_loss,
        gamma_neg=options.gamma_neg,
        gamma_pos=options.gamma_pos,
        clip=options.clip,
        focal_grad=options.focal_grad,
    )


DECLARATION = Loss(build=build, options=AslOptions, reduction="sum", help="asymmetric loss (Ridnik et al.)")
