"""Where a dataset's derived files (parsed annotations, image cache, image checks) go."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_folder(root: Path, cache_dir: str | None) -> Path:
    """Where derived files go: `data.cache_dir`, else ROOT/.cml-cache, else the user cache."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.access(root, os.W_OK):
        return root / ".cml-cache"
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return Path(os.environ.get("CML_CACHE", "~/.cache/cml")).expanduser() / f"parsed-{digest}"
