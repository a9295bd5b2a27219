"""A throwaway dataset declared in one file outside cml: the synthetic dataset with fewer classes."""

from dataclasses import dataclass

from cml.datasets import Dataset, option


@dataclass
class SmallOptions:
    classes: int = option(4, low=4, high=24, help="how many synthetic classes")


def build(data_cfg):
    from dataclasses import replace

    from cml.datasets.synthetic import load

    synthetic = replace(data_cfg.synthetic, num_classes=data_cfg.ext_data.classes)
    return load(replace(data_cfg, synthetic=synthetic))


DECLARATION = Dataset(build=build, options=SmallOptions, help="synthetic, fewer classes")
