"""What torchrun tells every process through the environment, readable without torch (the CLI
checks and locks the run directory before torch is imported; `cml.runtime.distributed` joins the group)."""

from __future__ import annotations

import os

from cml.core.errors import UserError

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Started by torchrun with several processes."""
    world = os.environ.get("WORLD_SIZE", "1")
    return world.isdigit() and int(world) > 1


def torchrun_environment() -> bool:
    """Every variable torchrun sets is there (not WORLD_SIZE alone, exported by hand)."""
    return launched() and all(name in os.environ for name in TORCHRUN_VARIABLES)


def launch_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def check_launch() -> None:
    """WORLD_SIZE alone (exported by hand, or left from another job) is not a torchrun launch."""
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        return
    if not world.isdigit() or int(world) < 1:
        raise UserError(f"WORLD_SIZE={world!r}: expected a number of processes (torchrun sets it); unset it")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if int(world) > 1 and missing:
        raise UserError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not: start several processes with torchrun --nproc_per_node N -m cml run ..., "
            "or unset WORLD_SIZE for one process"
        )


def peer_lost(err: Exception) -> bool:
    """A collective failed because another process of the torchrun job is gone (killed, out of memory)."""
    if not launched() or not isinstance(err, RuntimeError):
        return False
    text = str(err)
    return type(err).__name__ in ("DistBackendError", "DistNetworkError") or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL")
    )


AUTO_WORKERS = 8  # data.num_workers `auto`: at most this many loader processes per training process


def cores() -> int:
    """The cores this process may run on (its affinity: a cluster job's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        return os.cpu_count() or 1


def loader_workers(setting, accelerator: bool) -> int:
    """data.num_workers as a number. `auto`: 0 on the CPU, where workers would take the cores that
    train; on an accelerator this process's share of the cores (torchrun's LOCAL_WORLD_SIZE
    processes on this machine) less one for the process itself, from 1 to AUTO_WORKERS."""
    if setting != "auto":
        return setting
    if not accelerator:
        return 0
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    share = cores() // max(1, int(local) if local.isdigit() else 1)
    return max(1, min(AUTO_WORKERS, share - 1))


def cache_workers(setting) -> int:
    """Processes that build the image cache: data.num_workers, or for `auto` every core up to
    AUTO_WORKERS (rank 0 builds it alone, before anything trains)."""
    return min(AUTO_WORKERS, cores()) if setting == "auto" else setting
