"""Section 1 of bench/gpu_check.sh: the machine's facts, as one result (JSON) with a markdown table.

    python bench/_gpu_facts.py RESULT WORK_DIR

Python, torch (its CUDA and cuDNN), timm, torchvision, torchmetrics, avalanche-lib, numpy, Pillow
(and whether it decodes JPEGs with libjpeg-turbo), the GPU (name, memory, multiprocessors;
nvidia-smi's line when present), /dev/shm's size (Docker gives 64 MB by default: too small for
many DataLoader workers, `docker run --shm-size`), the CPU cores this process may use, the free
memory, the free disk where the work folder is, and a C compiler (torch.compile's inductor needs
one on the host); and whether cml and Avalanche import (the wheels of bench/gpu_wheels.sh)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def command(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return (done.stdout.strip() or done.stderr.strip()).replace("\n", "; ")
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"n/a ({type(err).__name__})"


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def meminfo() -> dict:
    try:
        rows = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return {k: int(rows[k].split()[0]) * 1024 for k in ("MemTotal", "MemAvailable") if k in rows}
    except OSError:
        return {}


def main() -> None:
    result_path, work = Path(sys.argv[1]), Path(sys.argv[2])
    import torch

    facts = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "cuDNN": str(torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None),
    }
    for dist in ("timm", "torchvision", "torchmetrics", "avalanche-lib", "tensorboard", "numpy", "pillow", "triton"):
        facts[dist] = version(dist)
    try:
        from PIL import features

        facts["pillow"] += f" (libjpeg-turbo: {features.check_feature('libjpeg_turbo')})"
    except Exception:
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        facts["GPU (torch)"] = (
            f"{p.name}, {gib(p.total_memory)}, {p.multi_processor_count} SMs, "
            f"capability {p.major}.{p.minor}; {torch.cuda.device_count()} device(s)"
        )
    else:
        facts["GPU (torch)"] = "none (CUDA not available)"
    facts["nvidia-smi"] = (
        command("nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv,noheader")
        if shutil.which("nvidia-smi")
        else "not present"
    )
    try:
        shm = shutil.disk_usage("/dev/shm")
        facts["/dev/shm"] = f"{gib(shm.total)} ({gib(shm.free)} free)" + (
            " TOO SMALL for many workers" if shm.total < 2**30 else ""
        )
    except OSError:
        facts["/dev/shm"] = "absent"
    facts["df /dev/shm"] = command("df", "-h", "/dev/shm")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts["CPU cores"] = f"{usable} usable of {os.cpu_count()} ({platform.processor() or platform.machine()})"
    mem = meminfo()
    facts["memory"] = f"{gib(mem.get('MemAvailable', 0))} available of {gib(mem.get('MemTotal', 0))}"
    facts["disk (work folder)"] = f"{gib(shutil.disk_usage(work).free)} free at {work}"
    facts["C compiler"] = shutil.which("cc") or shutil.which("gcc") or "none (torch.compile's inductor cannot build)"
    facts["cml commit"] = command("git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD")
    try:
        import avalanche.training  # noqa: F401  (the wheels of bench/gpu_wheels.sh)

        import cml.commands.run  # noqa: F401

        facts["cml imports"] = "ok"
    except Exception as err:
        facts["cml imports"] = f"FAILED: {type(err).__name__}: {err}"
    facts["HF_HUB_OFFLINE / CML_CACHE"] = f"{os.environ.get('HF_HUB_OFFLINE')} / {os.environ.get('CML_CACHE')}"
    lines = ["| fact | value |", "|---|---|"] + [f"| {k} | {str(v).replace('|', '/')} |" for k, v in facts.items()]
    result = {
        "status": "info" if facts["cml imports"] == "ok" else "fail",
        "summary": f"{facts['GPU (torch)']}; torch {facts['torch']}",
        "md": lines,
        "details": facts,
    }
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
