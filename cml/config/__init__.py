"""The experiment config: the typed keys (`keys`), loading with overrides (`loading`), the
checks across keys (`checks`) and the generated reference (`reference`). Torch-free."""

from cml.config.keys import Config, config_class
from cml.config.loading import load_config, load_raw, parse_override, to_dict
from cml.config.reference import describe, markdown_reference, model_option_rows

__all__ = [
    "Config",
    "config_class",
    "describe",
    "load_config",
    "load_raw",
    "markdown_reference",
    "model_option_rows",
    "parse_override",
    "to_dict",
]
