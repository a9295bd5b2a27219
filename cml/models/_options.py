"""The option schema the models share (torch-free): the discriminative regulariser's
(`model.options.discriminative`, `cml/models/_discriminative.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from cml.core.schema import option


@dataclass
class DiscriminativeOptions:
    weight: float = option(0.03, low=0, help="weight of the supervised contrastive loss over label features; 0 = off")
    temperature: float = option(0.1, positive=True, help="its temperature")


def divides(options, key: str, of: str, what: str) -> str | None:
    """A message when `of` is not a multiple of `key` (cross-field checks of the declarations)."""
    a, b = getattr(options, key), getattr(options, of)
    return None if b % a == 0 else f"model.options.{key}: {a} does not divide {of} {b}; {what}"
