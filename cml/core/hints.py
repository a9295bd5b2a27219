"""The one "did you mean" hint every message that refuses a name ends with."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    return difflib.get_close_matches(str(word)[:100], list(choices), n=n, cutoff=cutoff)


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "", n: int = 1, cutoff: float = 0.6) -> str:
    """ "; did you mean 'PREFIXx'?" for the closest choices, or "" when none is close."""
    close = closest(word, choices, n, cutoff)
    return f"; did you mean {', '.join(repr(prefix + c) for c in close)}?" if close else ""
