"""What torchrun tells every process through the environment, readable without torch (the CLI
checks and locks the run directory before torch is imported; `cml.distributed` joins the group)."""

from __future__ import annotations

import os


def launched() -> bool:
    """Started by torchrun with several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_rank() -> int:
    return int(os.environ.get("RANK", "0"))
