"""What a run sets up in torch before building anything: the seed, the determinism switches and
the device (`cml.experiment`, the benches)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from cml.core.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_determinism(deterministic: bool) -> None:
    """train.deterministic: CUDA's reproducibility switches (the CPU is deterministic already).
    Off, cuDNN autotunes each convolution shape (`benchmark`, fastest kernels, not bit for bit
    reproducible); on, torch refuses ops without a deterministic kernel, cuDNN uses only
    deterministic ones, and cuBLAS a fixed workspace (read at CUDA's first matmul, after this)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda was asked for but no CUDA device is available")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
