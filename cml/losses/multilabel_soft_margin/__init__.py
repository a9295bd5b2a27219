"""multilabel_soft_margin: torch's MultiLabelSoftMarginLoss, PRS's loss."""

from cml.core.registry import Loss


def build(options):
    from cml.losses.multilabel_soft_margin.loss import multilabel_soft_margin

    return multilabel_soft_margin


DECLARATION = Loss(build=build, reduction="mean", help="torch's MultiLabelSoftMarginLoss (PRS)")
