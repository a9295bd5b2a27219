"""linear: a timm backbone's pooled feature and one growing linear head (the baseline)."""

from cml.registry import Model


def build(backbone: str, pretrained, options, num_classes: int = 0, image_size=None):
    from cml.models.linear.model import LinearModel

    return LinearModel(backbone, pretrained, num_classes)


DECLARATION = Model(build=build, help="pooled backbone feature, one logit per class")
