#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs on the GPU box, fetched here into .whl/ (ignored by git;
# carry it: `carry: [".whl"]`). Needs PyPI here; the box has no network.
#
# The box (Python 3.12, x86-64) has torch, torchvision, timm, torchmetrics, tensorboard, numpy,
# scipy, scikit-learn, matplotlib, pillow, pyyaml, tqdm, psutil, requests, pytest and hypothesis
# (/work/.library/device/KINDS.md lists them). Of what cml imports, that leaves avalanche-lib and
# the dependencies avalanche imports at import time: dill, gdown (+ beautifulsoup4, soupsieve),
# pytorchcv, qpsolvers and GPUtil (an sdist only: built into a wheel here). The versions are those
# cml is tested with (.venv here). All are pure Python (py3-none-any), so they suit any Python 3.
# wandb is left out: avalanche imports it at import time, but its wheel is 20 MB with a dozen
# dependencies (pydantic, opentelemetry, ...) and cml never calls it, so gpu_check.sh writes a
# stand-in module when the box lacks it. Everything is installed with --no-deps (no resolver, no
# index), so a version the box already has is never replaced by accident.
#
# Usage: bash bench/gpu_wheels.sh      (PIP: the pip to use, default .venv/bin/pip or pip3)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-$([ -x .venv/bin/pip ] && echo .venv/bin/pip || echo pip3)}
rm -rf .whl && mkdir -p .whl
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  avalanche-lib==0.6.0 dill==0.4.1 gdown==6.5.1 beautifulsoup4==4.15.0 soupsieve==4.1.3 \
  pytorchcv==0.0.74 qpsolvers==4.13.0
$PIP wheel -q --no-deps -w .whl GPUtil==1.4.0
ls -l .whl
du -sh .whl
