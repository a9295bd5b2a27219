"""Images per second of the plain loader (decoding files) and the cached loader (memory-mapped
`data.cache`), over the same first N training images, in one process.

    python bench/loader_throughput.py --config configs/demo.yaml --set data.root=/tmp/cml-bench
    python bench/loader_throughput.py --config configs/demo.yaml --set data.root=/tmp/cml-bench \
        --set data.synthetic.image_size=256 --set data.image_size=224     # COCO-like decoding cost
    ... --set data.geometry=keep_aspect --set data.jpeg_draft=false --set train.crop_scale=0.05  # MULTI-LANE

The cache is built first into a fresh temporary folder (under data.cache_dir when set), so its
one-off build time is measured too; both loaders then run with the files in the page cache.
Each figure is the median of --repeats full passes of a DataLoader (shuffle off, no flips); with
`train.crop_scale` set, both loaders take its random resized crop of each image (from the
originals, which the cache then holds, with `data.geometry: keep_aspect`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cml.config import load_config  # noqa: E402
from cml.core.registry import DATASETS  # noqa: E402
from cml.runtime.launch import loader_workers  # noqa: E402
from cml.scenarios.augment import Augment  # noqa: E402
from cml.scenarios.cache import split_originals, split_pixels  # noqa: E402
from cml.scenarios.geometry import Geometry  # noqa: E402
from cml.scenarios.images import MultiLabelImages  # noqa: E402


def images_per_second(dataset, batch_size: int, workers: int, repeats: int) -> tuple[float, list[float]]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers):
            pass
        seconds.append(time.perf_counter() - start)
    return len(dataset) / statistics.median(seconds), seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    parser.add_argument("--images", type=int, default=2000, help="the first N training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=None, help="DataLoader and cache-build processes (default data.num_workers)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    cfg = load_config(args.config, args.overrides)
    accelerator = cfg.train.device != "cpu" and torch.cuda.is_available()  # what `cml run` would pick
    workers = loader_workers(cfg.data.num_workers, accelerator) if args.workers is None else args.workers
    data = DATASETS.get(cfg.data.dataset).build(cfg.data)
    rows = np.arange(min(args.images, len(data.train.paths)))
    split = data.train.subset(rows)
    size, geometry = cfg.data.image_size, Geometry.of(cfg.data)
    crop_only = SimpleNamespace(crop_scale=cfg.train.crop_scale, hflip=False, cutout=0.0, randaugment=False)
    crop = Augment(crop_only, size) if cfg.train.crop_scale else None

    with tempfile.TemporaryDirectory(prefix="cml-bench-", dir=cfg.data.cache_dir) as folder:
        start = time.perf_counter()
        if geometry.train_originals:
            pixels = split_originals(split.paths, Path(folder), workers)
        else:
            pixels = split_pixels(split.paths, geometry, Path(folder), workers)
        build_s = time.perf_counter() - start
        plain = MultiLabelImages(split.paths, split.labels, geometry, crop)
        cached = MultiLabelImages(split.paths, split.labels, geometry, crop, pixels, rows)
        plain_rate, plain_runs = images_per_second(plain, args.batch_size, workers, args.repeats)
        cached_rate, cached_runs = images_per_second(cached, args.batch_size, workers, args.repeats)
        del pixels, cached  # close the memory map before the folder goes

    result = {
        "config": args.config,
        "overrides": args.overrides,
        "dataset": cfg.data.dataset,
        "images": len(rows),
        "image_size": size,
        "geometry": geometry.kind,
        "batch_size": args.batch_size,
        "workers": workers,
        "repeats": args.repeats,
        "build_s": build_s,
        "plain_img_s": plain_rate,
        "cached_img_s": cached_rate,
        "ratio": cached_rate / plain_rate,
        "plain_runs_s": plain_runs,
        "cached_runs_s": cached_runs,
    }
    print(
        f"{cfg.data.dataset}: {len(rows)} images at {size}x{size} ({geometry.kind}), batch {args.batch_size}, "
        f"{workers} workers, median of {args.repeats}"
    )
    print(f"{'loader':<10} {'images/s':>10}")
    print(f"{'plain':<10} {plain_rate:>10.0f}")
    print(f"{'cached':<10} {cached_rate:>10.0f}")
    print(
        f"ratio cached/plain {result['ratio']:.2f}x; one-off cache build {build_s:.2f}s "
        f"({len(rows) / build_s:.0f} images/s)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
