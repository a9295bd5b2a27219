"""Multi-label models on timm backbones, one file each, chosen by `model.name`."""

from cml.registry import Registry

MODELS = Registry("cml.models", "model")


def create_model(name: str, **kwargs):
    return MODELS.get(name)(**kwargs)
