"""cml: continual multi-label learning on Avalanche.

The Python API (docs/api.md): `cml.Experiment` builds and runs what `python -m cml run` does;
the registries and the base classes for new components are re-exported here. Names are resolved
on first use, so `import cml` (and the command line's argument checks) stay free of torch."""

from cml.core.exports import lazy_exports

__version__ = "0.1.0"

__getattr__ = lazy_exports(
    __name__,
    {
        "Experiment": "experiment",
        "build_model": "models",
        "load_data": "datasets.imagefiles",
        "Config": "config",
        "load_config": "config",
        "DATASETS": "core.registry",
        "MODELS": "core.registry",
        "PLUGINS": "core.registry",
        "STRATEGIES": "core.registry",
        "LOSSES": "core.registry",
        "PROTOCOLS": "core.registry",
        "UserError": "core.errors",
        "CmlPlugin": "plugins",
        "MultiLabelModel": "models",
        "MultiLabelModelProtocol": "models",
        "GrowingLinear": "models",
        "create_backbone": "models",
        "input_stats": "models",
        "MultiLabelStrategy": "strategies",
        "MultiLabelMetrics": "evaluation.metric_plugin",
        "build_scenario": "scenarios.builder",
        "masked_bce": "losses.bce.loss",
    },
)
__all__ = [
    "CmlPlugin",
    "Config",
    "DATASETS",
    "Experiment",
    "GrowingLinear",
    "LOSSES",
    "MODELS",
    "MultiLabelMetrics",
    "MultiLabelModel",
    "MultiLabelModelProtocol",
    "MultiLabelStrategy",
    "PLUGINS",
    "PROTOCOLS",
    "STRATEGIES",
    "UserError",
    "build_model",
    "build_scenario",
    "create_backbone",
    "input_stats",
    "load_config",
    "load_data",
    "masked_bce",
]
