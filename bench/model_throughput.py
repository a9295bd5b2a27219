"""Training images/s of each cml model against `linear` on the same backbone, input size, batch
and number of classes, in one command (figures as ratios to linear).

    python bench/model_throughput.py                                  # the demo's resnet10t, 32 px
    python bench/model_throughput.py --backbone resnet50 --image-size 224 --batch 32 --classes 80 \
        --amp bf16 --channels-last                                    # a CUDA machine

One training iteration is what the strategy does: normalise the uint8 batch, forward with
`full=True` (under autocast when --amp is given), the criterion on the logits plus the model's
`loss_terms` (outside autocast), backward, Adam step. The data are random images and multi-hot targets
made once on the device, so the figure is the model's cost, not the loader's. The models take
turns within each repeat, so that a change in machine load hits them alike; the median over
repeats is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402

from cml.core.registry import MODELS  # noqa: E402
from cml.losses.bce.loss import masked_bce  # noqa: E402
from cml.models._base import input_stats, normalized  # noqa: E402

MODEL_NAMES = MODELS.names()


def build(name: str, args, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    declaration = MODELS.get(name)  # default options
    options = declaration.options() if declaration.options else None
    model = (
        declaration.build(args.backbone, False, options, num_classes=args.classes, image_size=args.image_size)
        .to(device)
        .train()
    )
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def train_seconds(model, optimizer, batches, iterations: int, autocast, device) -> float:
    stats = input_stats(model)

    def step(images, targets):
        x = normalized(images, stats)
        with autocast():
            outputs = model(x, full=True)
        # the losses outside autocast, as in the strategy
        loss = masked_bce(outputs["logits"], targets) + sum(model.loss_terms(outputs, targets, masked_bce).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    images, targets = batches
    for _ in range(2):  # warm-up: kernels, allocator, optimizer state
        step(images, targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step(images, targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=MODEL_NAMES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=generator
    ).to(device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = (torch.rand(args.batch, args.classes, generator=generator) < 0.15).float().to(device)

    models = {name: build(name, args, device) for name in args.models}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(
                train_seconds(model, optimizers[name], (images, targets), args.iterations, autocast, device)
            )
    rates = {name: args.iterations * args.batch / statistics.median(t) for name, t in times.items()}
    base = rates.get("linear", next(iter(rates.values())))
    print(
        f"{args.backbone} at {args.image_size}px, batch {args.batch}, {args.classes} classes, {device}, "
        f"amp {args.amp}, channels_last {args.channels_last}; {args.iterations} iterations, median of "
        f"{args.repeats}"
    )
    print("| model | training images/s | vs linear |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| `{name}` | {rate:.1f} | {rate / base:.3f}x |")


if __name__ == "__main__":
    main()
