"""Multi-label models on timm backbones, chosen by `model.name`: one package each, whose
`__init__.py` declares the model (options at `model.options`, facts) without torch and whose
`model.py` implements it (docs/design.md)."""

from cml.core.exports import lazy_exports
from cml.core.registry import Model
from cml.core.schema import option

__getattr__ = lazy_exports(
    __name__,
    {
        "MultiLabelModel": "_base",
        "MultiLabelModelProtocol": "_base",
        "input_stats": "_base",
        "GrowingLinear": "_parts",
        "create_backbone": "_parts",
        "build_model": "_build",
        "feature_dim": "_parts",
        "full_precision": "_parts",
        "Fp32Linear": "_parts",
        "head_size": "_parts",
    },
)  # torch-bound: loaded on first use
__all__ = [
    "Fp32Linear",
    "build_model",
    "GrowingLinear",
    "Model",
    "MultiLabelModel",
    "MultiLabelModelProtocol",
    "create_backbone",
    "feature_dim",
    "full_precision",
    "head_size",
    "input_stats",
    "option",
]
