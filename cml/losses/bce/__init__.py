"""bce: BCE-with-logits, the mean over the labels that count."""

from cml.core.registry import Loss


def build(options):
    from cml.losses.bce.loss import masked_bce

    return masked_bce


DECLARATION = Loss(build=build, reduction="mean", help="mean BCE-with-logits")
