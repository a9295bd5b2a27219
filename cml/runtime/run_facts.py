"""How a run ran, for results.json: per step its wall time, training throughput, peak memory and
parameter counts (`StepFacts`), and once per run the software, commit, device and host
(`environment`). The numbers are the process's own (rank 0's under torchrun), measured with
the standard library and torch's counters: they cost nothing beside a step's training."""

from __future__ import annotations

import platform
import resource
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

import cml

PACKAGES = {"timm": "timm", "avalanche": "avalanche-lib"}  # name -> distribution (torch: its own, with the build)
SOURCE = Path(cml.__file__).resolve().parents[1]  # the tree cml is imported from


def _mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def peak_ram_mib() -> float:
    """The process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _mib(peak if sys.platform == "darwin" else peak * 1024)


def parameter_count(parameters) -> int:
    """Elements of the distinct parameters (a tensor shared by two modules counted once)."""
    return sum(p.numel() for p in {id(p): p for p in parameters}.values())


class StepFacts:
    """Started just before a step trains; `trained()` after training, `record()` after its
    evaluation. The GPU peak is this step's (its counter is reset at the start), the RAM peak the
    process's so far (the kernel keeps no per-step peak)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.device = device
        self.start = time.perf_counter()
        self.train_s = 0.0

    def trained(self) -> None:
        self.train_s = time.perf_counter() - self.start

    def record(self, strategy) -> dict:
        """`images_per_s`: the images the step's batches held times the epochs it ran (one pass for
        a step learnt in closed form, L3A's), over its training time. `params_trained`: the
        parameters in the optimizer of a step that took gradient steps (0 for a closed-form step)."""
        wall = time.perf_counter() - self.start
        images = strategy.trained_size * max(1, strategy.clock.train_exp_epochs)
        descended = strategy.clock.train_exp_iterations > 0
        trained = [p for group in strategy.optimizer.param_groups for p in group["params"]] if descended else []
        return {
            "wall_s": round(wall, 3),
            "train_s": round(self.train_s, 3),
            "images_per_s": round(images / self.train_s, 2) if self.train_s > 0 else None,
            "peak_ram_mib": peak_ram_mib(),
            "peak_gpu_mib": _mib(torch.cuda.max_memory_allocated(self.device)) if self.cuda else None,
            "params_total": parameter_count(strategy.core_model.parameters()),
            "params_trained": parameter_count(trained),
        }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):  # no git, ...
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> dict | None:
    """The commit of the source tree cml runs from, if that tree is a git checkout (an installed
    cml is not: None), and whether tracked files differ from it (`dirty`)."""
    if not (SOURCE / ".git").exists():
        return None
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device, processes: int = 1) -> dict:
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "cml": cml.__version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **{name: _version(dist) for name, dist in PACKAGES.items()},
        "device": {"type": device.type, "name": device_name, "processes": processes},
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
