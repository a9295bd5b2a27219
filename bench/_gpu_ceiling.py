"""Section 4 of bench/gpu_check.sh: the model-only ceiling, training images/s of cml models on
random tensors already on the device (no loader, no framework), as a hand-written loop does it.

    python bench/_gpu_ceiling.py RESULT --case NAME=MODEL,BACKBONE,SIZE,BATCH,AMP,CLASSES[,cl] ... \
        [--iterations 20] [--repeats 3] [--warmup 5]

One iteration: normalise the uint8 batch with the backbone's statistics, forward with
`full=True` under autocast (fp16 / bf16 / none), masked BCE plus the model's `loss_terms`,
backward through a GradScaler (fp16), Adam step; the models are built as a run builds them, with
their declared default options (bench/model_throughput.py's `build`: krt's embed_dim 384 is the
COCO configs'). `cl`: channels_last, on CUDA only, as in cml. cuDNN autotuning is on, as in a run
without `train.deterministic`. The figure is
the median over --repeats of --iterations after --warmup iterations; the time of each repeat
ends with torch.cuda.synchronize(). The loaders' work (decoding, RandAugment, Cutout) is not in
it, so a run from real images can at best approach it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402
from model_throughput import build  # noqa: E402  (also puts the repository root on the path)

from cml.losses.bce.loss import masked_bce  # noqa: E402
from cml.models._base import input_stats, normalized  # noqa: E402

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def measure(model_name, backbone, size, batch, amp, classes, cl, args, device) -> dict:
    channels_last = cl and device.type == "cuda"  # as cml: ignored on the CPU
    opts = SimpleNamespace(backbone=backbone, classes=classes, image_size=size, channels_last=channels_last)
    model = build(model_name, opts, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = DTYPES.get(amp) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    stats = input_stats(model)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = (torch.rand(batch, classes, generator=g) < 0.04).float().to(device)

    def step():
        x = normalized(images, stats)
        with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            outputs = model(x, full=True)
        loss = masked_bce(outputs["logits"].float(), targets)
        loss = loss + sum(model.loss_terms(outputs, targets, masked_bce).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    sync()
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.iterations):
            step()
        sync()
        seconds.append(time.perf_counter() - start)
    rate = args.iterations * batch / statistics.median(seconds)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    model = optimizer = None  # frees the GPU memory before the next case
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "images_per_s": rate,
        "repeats_s": seconds,
        "peak_gib": peak,
        "model": model_name,
        "backbone": backbone,
        "size": size,
        "batch": batch,
        "amp": amp if dtype else "none",
        "classes": classes,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result")
    parser.add_argument(
        "--case", action="append", required=True, help="NAME=MODEL,BACKBONE,SIZE,BATCH,AMP,CLASSES[,cl]"
    )
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    cases, lines = (
        {},
        [
            "| case | model | backbone | px | batch | amp | channels_last | classes | images/s | peak GiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ],
    )
    result = {"status": "measured", "md": lines, "details": {"cases": cases, "device": str(device)}}
    for spec in args.case:
        name, fields = spec.split("=", 1)
        model, backbone, size, batch, amp, classes, *flags = fields.split(",")
        cl = "cl" in flags and device.type == "cuda"
        try:
            cases[name] = c = measure(model, backbone, int(size), int(batch), amp, int(classes), cl, args, device)
            peak = f"{c['peak_gib']:.1f}" if c["peak_gib"] is not None else "-"
            lines.append(
                f"| {name} | `{model}` | {backbone} | {size} | {batch} | {c['amp']} | {cl} | {classes} "
                f"| {c['images_per_s']:.1f} | {peak} |"
            )
        except Exception as err:  # one failing case leaves the others
            result["status"] = "fail"
            lines.append(
                f"| {name} | `{model}` | {backbone} | {size} | {batch} | {amp} | {cl} | {classes} | FAILED: "
                f"{type(err).__name__}: {str(err)[:150]} | |"
            )
        Path(args.result).write_text(json.dumps(result, indent=1) + "\n")  # as it goes
        print(lines[-1], flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    result["summary"] = (
        f"on {name}, median of {args.repeats} x {args.iterations} iterations after {args.warmup} warm-up"
    )
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
