"""A throwaway model declared in one file outside cml: a timm backbone's pooled feature, scaled."""

from dataclasses import dataclass

from cml.models import Model, option


@dataclass
class ScaledOptions:
    scale: float = option(1.0, positive=True, help="factor on the logits")


def build(backbone, pretrained, options, num_classes=0, image_size=None):
    from cml.models.linear.model import LinearModel

    class Scaled(LinearModel):
        def forward_outputs(self, x):
            outputs = super().forward_outputs(x)
            return {**outputs, "logits": outputs["logits"] * options.scale}

    return Scaled(backbone, pretrained, num_classes)


DECLARATION = Model(build=build, options=ScaledOptions, help="linear with scaled logits")
