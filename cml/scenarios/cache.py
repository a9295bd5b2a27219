"""An optional cache of decoded, resized images (`data.cache: true`), memory-mapped at run time.

On COCO, decoding JPEGs and resizing them dominates data loading, and every epoch, step and
strategy decodes the same files again. The cache does it once per split: an (N, S, S, 3) uint8
`.npy` file of `read_image(path, S)`, then opened read-only with `mmap_mode="r"`, so items are
plain slices served from the page cache and DataLoader workers share one copy.

The file name holds a hash of the split's image paths with each file's size and modification
time (as the image check stats them), S and FORMAT_VERSION, so another dataset, subset or size,
or an image edited or replaced in place, gets its own file and a stale one is never reused (an
edit that keeps both size and modification time is not seen). A build writes to a
temporary name and is renamed into place only when complete, so a killed build never leaves a
file that looks finished. A file damaged afterwards (truncated, emptied: a full disk, a copy cut
short) is detected when opened, named in one warning and rebuilt, so it cannot fail every later run.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cml.core.errors import UserError
from cml.datasets._types import MultiLabelData
from cml.datasets.imagefiles import derived_folder
from cml.runtime.launch import cache_workers
from cml.scenarios.images import read_image

FORMAT_VERSION = 2  # bump when read_image's output changes (2: 16-bit and transparent images)
CHUNK = 256  # images per job handed to a worker


def cached_pixels(data: MultiLabelData, data_cfg) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) read-only arrays whose row i is `read_image(split.paths[i], data_cfg.image_size)`."""
    folder = derived_folder(data_cfg, data.train.paths + data.test.paths)
    workers = cache_workers(data_cfg.num_workers)
    return (
        split_pixels(data.train.paths, data_cfg.image_size, folder, workers),
        split_pixels(data.test.paths, data_cfg.image_size, folder, workers),
    )


def split_pixels(paths: list[str], size: int, folder: Path, workers: int = 0) -> np.ndarray:
    """The cached images of `paths` in `folder`, built first if absent (with `workers` processes)."""
    key = f"v{FORMAT_VERSION}\n{size}\n" + "\n".join(f"{p}\0{_stamp(p)}" for p in paths)
    target = folder / f"images-{size}px-{len(paths)}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
    shape = (len(paths), size, size, 3)
    if _open(target, shape) is None:
        _build(paths, size, target, workers)
    return np.load(target, mmap_mode="r")


def _stamp(path: str) -> str:
    """`size-mtime_ns` of the file at `path` (an image edited in place changes the cache key)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _open(target: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cache file at `target` if it is whole and of `shape`, else None (a damaged one warned):
    numpy fails on a truncated file (`mmap length`) or an empty one (`EOFError`), and such a file,
    left by a full disk or a copy cut short, would otherwise fail every run that opens it."""
    if not target.is_file():
        return None
    try:
        pixels = np.load(target, mmap_mode="r")
    except (ValueError, EOFError, OSError) as err:
        warnings.warn(f"{target}: the image cache file is damaged ({err}); rebuilding it", stacklevel=3)
        return None
    return pixels if pixels.shape == shape and pixels.dtype == np.uint8 else None


def _build(paths: list[str], size: int, target: Path, workers: int) -> None:
    shape = (len(paths), size, size, 3)
    tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}.npy")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        need, free = int(np.prod(shape)), shutil.disk_usage(target.parent).free
        if need > free:
            raise UserError(
                f"data.cache_dir: the image cache needs {need / 1e9:.1f} GB but "
                f"{target.parent} has {free / 1e9:.1f} GB free; set data.cache_dir elsewhere"
            )
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)  # header + sparse body
    except OSError as err:
        raise UserError(
            f"data.cache_dir: cannot write the image cache in {target.parent} "
            f"({err.strerror or err}); set data.cache_dir to a writable folder"
        ) from None
    interactive = sys.stdout.isatty()
    if not interactive:
        print(f"caching {len(paths)} images at {size}x{size} into {target} ...", flush=True)
    start = time.perf_counter()
    jobs = [(tmp, i, paths[i : i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    try:
        with tqdm(total=len(paths), desc="caching images", unit="img", disable=not interactive, file=sys.stdout) as bar:
            if min(workers, len(jobs)) > 1:  # a process per chunk at most
                with multiprocessing.Pool(min(workers, len(jobs))) as pool:
                    for done in pool.imap_unordered(_fill, jobs):
                        bar.update(done)
            else:
                for job in jobs:
                    bar.update(_fill(job))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not interactive:
        print(f"cached {len(paths)} images in {time.perf_counter() - start:.0f}s", flush=True)


def _fill(job: tuple[Path, int, list[str], int]) -> int:
    """Decode one slice of images into the partly written cache file; returns how many."""
    tmp, start, paths, size = job
    pixels = np.load(tmp, mmap_mode="r+")
    for i, path in enumerate(paths, start):
        pixels[i] = read_image(path, size)
    pixels.flush()
    return len(paths)
