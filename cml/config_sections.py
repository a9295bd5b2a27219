"""The field helper of the config dataclasses, and the datasets' own sections (moved out of
`cml.config` to keep it short; `cml.config` re-exports them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

SEED_MAX = 2**32 - 1  # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1


def _opt(default: Any = dataclasses.MISSING, *, low: float | None = None, high: float | None = None,
         positive: bool = False, help: str = "", **kw: Any) -> Any:
    meta = {"low": low, "high": high, "positive": positive, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta, **kw)


@dataclass
class SyntheticConfig:
    num_classes: int = _opt(24, low=4, high=24, help="how many of the 24 named classes to use")
    train_images: int = _opt(1500, low=8, high=1_000_000)
    test_images: int = _opt(500, low=8, high=1_000_000)
    image_size: int = _opt(64, low=16, high=512, help="size of the generated images on disk")
    seed: int = _opt(0, low=0, high=SEED_MAX, help="the dataset's own seed, independent of the run's seed")


@dataclass
class CocoConfig:
    crowd: Literal["ignore", "positive", "krt"] = _opt(
        "ignore", help="iscrowd=1 annotations: ignored; a label (PRS's COCOseq); krt: they select "
                       "the image for a step but are not labels (KRT's loader)")


@dataclass
class VocConfig:
    difficult: Literal["negative", "positive", "ignore"] = _opt(
        "negative", help="label 0 (difficult): not a label, a label, or left out of that class's AP")


@dataclass
class NusWideConfig:
    images: Optional[str] = _opt(None, help="image folder (default ROOT/images); list paths are relative to it")


@dataclass
class ListConfig:
    train: Optional[str] = _opt(None, help="CSV or JSONL of path,labels for training")
    test: Optional[str] = _opt(None, help="CSV or JSONL of path,labels for testing")
    classes: Optional[str] = _opt(None, help="text file, one class name per line")
