"""Majority / moderate / minority classes, for PRS's per-group breakdown (numpy only, no torch).

PRS ships its groups as three JSON files per dataset (`code/resources/major_cats.json`,
`moderate_cats.json`, `minor_cats.json`; `*_nuswide.json` for NUS-WIDEseq): each a JSON list of
class names. `eval.groups.{majority,moderate,minority}` name such files. A name that is not a
class of the dataset is an error; a dataset class the scenario does not use is skipped.

Without files the groups come from the training counts: n_c = the training images whose targets
hold class c in the step that teaches c (the counts `cml plan` prints). With r_c = n_c / max n,
a class is minority when r_c < low, majority when r_c >= high, moderate otherwise
(`eval.groups.thresholds: [low, high]`, default [0.1, 0.7]: the relative-frequency cut-offs that
PRS's code applies where it builds groups itself, for its long-tailed MNIST and SVHN streams).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cml.core.errors import UserError
from cml.core.hints import did_you_mean
from cml.core.safeyaml import load_json

GROUPS = ("majority", "moderate", "minority")


def read_class_list(path: Path, dataset_classes: list[str]) -> list[str]:
    doc = load_json(path, "a JSON list of class names")
    if not isinstance(doc, list):
        raise UserError(f"{path}: expected a JSON list of class names, got a JSON {type(doc).__name__}")
    known = set(dataset_classes)
    for k, name in enumerate(doc):
        if not isinstance(name, str):
            raise UserError(
                f"{path}: entry {k}: {json.dumps(name)} is not a class name; expected a JSON list of class names"
            )
        if name not in known:
            hint = did_you_mean(name, dataset_classes)
            raise UserError(f"{path}: entry {k}: {name!r} is not a class of the dataset{hint}")
    return doc


def groups_from_files(groups_cfg, dataset_classes: list[str], class_names: list[str]) -> dict[str, list[int]]:
    index = {name: c for c, name in enumerate(class_names)}
    owner: dict[str, str] = {}
    groups = {}
    for group in GROUPS:
        path = Path(getattr(groups_cfg, group)).expanduser()
        names = read_class_list(path, dataset_classes)
        for k, name in enumerate(names):
            if name in owner:
                raise UserError(
                    f"{path}: entry {k}: {name!r} is already in the {owner[name]} list; "
                    "expected each class in one group"
                )
            owner[name] = group
        groups[group] = sorted(index[n] for n in names if n in index)
    return groups


def groups_from_counts(counts: np.ndarray, thresholds: list[float]) -> dict[str, list[int]]:
    low, high = thresholds
    ratio = counts / max(int(counts.max()), 1) if counts.size else counts
    return {
        "majority": np.flatnonzero(ratio >= high).tolist(),
        "moderate": np.flatnonzero((ratio >= low) & (ratio < high)).tolist(),
        "minority": np.flatnonzero(ratio < low).tolist(),
    }


def class_groups(
    groups_cfg, dataset_classes: list[str], class_names: list[str], counts: np.ndarray
) -> tuple[dict[str, list[int]], str]:
    """({group: class indices in the scenario's order}, where they come from)."""
    if groups_cfg.majority:
        return groups_from_files(groups_cfg, dataset_classes, class_names), "eval.groups files"
    low, high = groups_cfg.thresholds
    return groups_from_counts(
        counts, groups_cfg.thresholds
    ), f"training counts: count / largest < {low} minority, >= {high} majority"
