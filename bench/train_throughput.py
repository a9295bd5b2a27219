"""Training images/s: a bare PyTorch loop against cml's strategy with every kind of plugin on
(a replay buffer, LwF, EWC, pseudo-labels), same model, batch, resolution, loss and Adam, both
fed from the decoded-image cache; peak GPU memory on CUDA.

    python bench/train_throughput.py --set model.backbone=resnet10t --set data.image_size=64
    # the issue's H100 setting (not measured here, no GPU):
    python bench/train_throughput.py --set model.backbone=resnet101 --set data.image_size=448 \
        --set train.batch_size=64 --set train.amp=bf16 --set train.channels_last=true --set data.num_workers=8

The strategy trains step 0, then step 1 is timed: the step where LwF, EWC and pseudo-labels
work (the previous model's forward, the penalty). Only its training epochs are timed (not EWC's
Fisher pass at the end of the step). The replay batch doubles the images per iteration, so the
strategy's incoming batch is half of `train.batch_size`: both sides put `train.batch_size`
images through the model per iteration, and images/s counts those.
"""

from __future__ import annotations

import argparse
import copy
import io
import time
import warnings

from _setup import bench_setup  # also puts the repository root on the path

warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cml.evaluation.progress import ProgressLogger  # noqa: E402
from cml.models._base import input_stats, normalized  # noqa: E402
from cml.models._build import build_model  # noqa: E402
from cml.plugins._base import build_plugin  # noqa: E402
from cml.strategies._base import MultiLabelStrategy, build_criterion  # noqa: E402
from cml.strategies._optim import build_optimizer  # noqa: E402

PLUGIN_SET = ["reservoir", "lwf", "ewc", "pseudo"]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(cfg, scenario, device, epochs: int) -> tuple[float, int]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device).train()
    experience = scenario.benchmark.train_stream[1]
    model.head.grow(experience.n_outputs)  # new rows on the model's device
    if cfg.train.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp) if device.type == "cuda" else None
    loader = DataLoader(
        experience.dataset,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
    )
    criterion, optimizer = build_criterion(cfg.train), build_optimizer(model, cfg.train)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)  # fp16 scales its loss, as cml does
    stats = input_stats(model)

    def train_epoch() -> int:
        images = 0
        for x, y, _ in loader:
            x, y = normalized(x.to(device, non_blocking=True), stats), y.to(device, non_blocking=True)
            if cfg.train.channels_last and device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=amp) if amp else torch.autocast("cpu", enabled=False):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            images += len(x)
        return images

    train_epoch()  # warm-up, untimed, as the strategy's step 0 is for its side
    sync(device)
    start, images = time.perf_counter(), 0
    for _ in range(epochs):
        images += train_epoch()
    sync(device)
    return time.perf_counter() - start, images


class EpochTimer(SupervisedPlugin):
    """Seconds and images of the training epochs of step 1."""

    def __init__(self, device):
        super().__init__()
        self.device, self.seconds, self.images, self._start = device, 0.0, 0, None

    def before_training_epoch(self, strategy, **kwargs):
        if strategy.experience.step == 1:
            sync(self.device)
            self._start = time.perf_counter()

    def after_training_iteration(self, strategy, **kwargs):
        if strategy.experience.step == 1:
            self.images += len(strategy.mb_x)

    def after_training_epoch(self, strategy, **kwargs):
        if self._start is not None:
            sync(self.device)
            self.seconds += time.perf_counter() - self._start
            self._start = None


def cml_strategy(cfg, scenario, device) -> tuple[float, int]:
    torch.manual_seed(cfg.seed)
    timer = EpochTimer(device)
    plugins = [build_plugin(name, cfg, scenario) for name in PLUGIN_SET] + [timer]
    strategy = MultiLabelStrategy(
        model=build_model(cfg),
        train_cfg=cfg.train,
        eval_batch_size=cfg.eval.batch_size,
        device=device,
        plugins=plugins,
        seed=cfg.seed,
        evaluator=EvaluationPlugin(loggers=[ProgressLogger(io.StringIO())]),
    )
    for t in (0, 1):
        strategy.train(
            scenario.benchmark.train_stream[t],
            eval_streams=[],
            num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.num_workers > 0,
            prefetch_factor=cfg.data.prefetch_factor,
        )
    return timer.seconds, timer.images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    base = [
        "data.cache=true",
        "scenario.base=12",
        "scenario.increment=12",
        "strategy.replay.batch_ratio=1",
        "strategy.replay.size=500",
        "train.hflip=false",
    ]
    cfg, scenario, device = bench_setup(args, base)
    bare_s, bare_n = bare_loop(cfg, scenario, device, cfg.train.epochs)
    bare_peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    half = copy.deepcopy(cfg)
    half.train.batch_size //= 2
    cml_s, cml_n = cml_strategy(half, scenario, device)
    bare_rate, cml_rate = bare_n / bare_s, cml_n / cml_s
    print(
        f"{cfg.model.backbone} at {cfg.data.image_size}px, {cfg.train.batch_size} images per iteration, "
        f"amp {cfg.train.amp if device.type == 'cuda' else 'none'}, {cfg.train.epochs} epoch(s), {device}"
    )
    print(f"bare PyTorch loop                  {bare_rate:9.1f} images/s ({bare_n} images)")
    print(f"cml, {'+'.join(PLUGIN_SET):<29} {cml_rate:9.1f} images/s ({cml_n} images)")
    print(f"ratio cml/bare                     {cml_rate / bare_rate:9.3f}")
    if device.type == "cuda":
        print(
            f"peak GPU memory: bare {bare_peak / 2**30:.2f} GiB, "
            f"cml {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        )


if __name__ == "__main__":
    main()
