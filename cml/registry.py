"""Name -> object registries, one module per entry (timm style).

Each entry lives in its own file named after it (``cml/models/linear.py`` registers ``linear``),
so the valid names are known from the file names alone: the config is checked without
importing torch, and ``get`` imports only the module that is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable


class Registry:
    def __init__(self, package: str, kind: str):
        self.package = package
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def names(self) -> list[str]:
        folder = Path(importlib.import_module(self.package).__file__).parent
        return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))

    def register(self, name: str) -> Callable[[Any], Any]:
        def add(obj: Any) -> Any:
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> Any:
        if name not in self._entries:
            if name not in self.names():
                raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
            importlib.import_module(f"{self.package}.{name}")
        return self._entries[name]
