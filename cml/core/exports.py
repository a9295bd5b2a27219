"""Public names of a kind's package that live in its torch-bound modules, resolved on first use.

A kind's package (`cml.plugins`, `cml.models`, ...) is imported whenever a declaration is read,
before torch may load; `lazy_exports` gives it a PEP 562 `__getattr__` so that
`from cml.plugins import CmlPlugin` works for authors while `import cml.plugins` stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """`__getattr__` for PACKAGE: NAMES maps each public name to the module (relative to PACKAGE)
    that defines it."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__
