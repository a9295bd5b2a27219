"""An optional cache of decoded, resized images (`data.cache: true`), memory-mapped at run time.

On COCO, decoding JPEGs and resizing them dominates data loading, and every epoch, step and
strategy decodes the same files again. The cache does it once per split: an (N, S, S, 3) uint8
`.npy` file of each image's S x S view (`data.geometry`: squashed, or keep_aspect's test view),
then opened read-only with `mmap_mode="r"`, so items are plain slices served from the page cache
and DataLoader workers share one copy. With keep_aspect the training split's random crops come
from the originals, so that split holds them at their own sizes: one flat uint8 file of every
image's (H, W, 3) pixels and an (N, 3) index of offset, height and width (`Originals`; COCO's
82,783 training images take about 70 GB, against 12.5 GB for 224 px squares).

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
from cml.datasets.imagefiles import derived_folder, open_image
from cml.runtime.launch import cache_workers
from cml.scenarios.geometry import Geometry, decode_original, read_checked

FORMAT_VERSION = 2  # bump when read_image's output changes (2: 16-bit and transparent images)
CHUNK = 256  # images per job handed to a worker


def cached_pixels(data: MultiLabelData, data_cfg) -> tuple:
    """(train, test) read-only caches whose row i is split row i as `Geometry.read` gives it."""
    geometry = Geometry.of(data_cfg)
    folder = derived_folder(data_cfg, data.train.paths + data.test.paths)
    workers = cache_workers(data_cfg.num_workers)
    if geometry.train_originals:
        train = split_originals(data.train.paths, folder, workers)
    else:
        train = split_pixels(data.train.paths, geometry, folder, workers)
    return train, split_pixels(data.test.paths, geometry, folder, workers)


def split_pixels(paths: list[str], geometry: Geometry, folder: Path, workers: int = 0) -> np.ndarray:
    """The cached S x S views of `paths` in `folder`, built first if absent (with `workers` processes)."""
    size, tag = geometry.size, geometry.cache_tag()
    key = f"v{FORMAT_VERSION}\n{tag}{size}\n" + "\n".join(f"{p}\0{_stamp(p)}" for p in paths)
    target = folder / f"images-{tag}{size}px-{len(paths)}-{_digest(key)}.npy"
    shape = (len(paths), size, size, 3)
    if _open(target, shape) is None:
        tmp = _allocate(target, shape)
        jobs = [(tmp, i, paths[i : i + CHUNK], geometry) for i in range(0, len(paths), CHUNK)]
        _run(jobs, _fill, workers, len(paths), f"{size}x{size}", [(tmp, target)])
    return np.load(target, mmap_mode="r")


class Originals:
    """Row i: the (H_i, W_i, 3) uint8 original of training image i, a view into one flat file."""

    def __init__(self, flat: np.ndarray, index: np.ndarray):
        self.flat, self.index = flat, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> np.ndarray:
        offset, h, w = (int(v) for v in self.index[row])
        return self.flat[offset : offset + h * w * 3].reshape(h, w, 3)


def split_originals(paths: list[str], folder: Path, workers: int = 0) -> Originals:
    """The cached originals of `paths` (keep_aspect's training split), built first if absent."""
    key = f"v{FORMAT_VERSION}\noriginals\n" + "\n".join(f"{p}\0{_stamp(p)}" for p in paths)
    stem = f"originals-{len(paths)}-{_digest(key)}"
    target, index_file = folder / f"{stem}.npy", folder / f"{stem}-index.npy"
    opened = _open_originals(target, index_file, len(paths))
    if opened is None:
        sizes = np.array([read_checked(p, _header_size) for p in paths], dtype=np.int64).reshape(-1, 2)
        index = np.zeros((len(paths), 3), dtype=np.int64)
        index[:, 1:] = sizes
        index[1:, 0] = np.cumsum(sizes[:, 0] * sizes[:, 1] * 3)[:-1]
        index_tmp = index_file.with_name(f"{index_file.stem}.tmp{os.getpid()}.npy")
        tmp = _allocate(target, (int((sizes[:, 0] * sizes[:, 1]).sum()) * 3,))
        try:
            np.save(index_tmp, index)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise UserError(f"data.cache_dir: cannot write {index_tmp} ({err.strerror or err})") from None
        jobs = [(tmp, index[i : i + CHUNK], paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK)]
        renames = [(index_tmp, index_file), (tmp, target)]
        _run(jobs, _fill_originals, workers, len(paths), "their own sizes", renames)
        opened = _open_originals(target, index_file, len(paths))
    return opened


def _header_size(path: str) -> tuple[int, int]:
    """(H, W) from the file's header, nothing decoded."""
    with open_image(path) as img:
        return img.height, img.width


def _digest(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _stamp(path: str) -> str:
    """`size-mtime_ns` of the file at `path` (an image edited in place changes the cache key)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _damaged(target: Path, err: Exception) -> None:
    warnings.warn(f"{target}: the image cache file is damaged ({err}); rebuilding it", stacklevel=4)


def _open(target: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cache file at `target` if it is whole and of `shape`, else None (a damaged one warned):
    numpy fails on a truncated file (`mmap length`) or an empty one (`EOFError`), and such a file,
    left by a full disk or a copy cut short, would otherwise fail every run that opens it."""
    if not target.is_file():
        return None
    try:
        pixels = np.load(target, mmap_mode="r")
    except (ValueError, EOFError, OSError) as err:
        _damaged(target, err)
        return None
    return pixels if pixels.shape == shape and pixels.dtype == np.uint8 else None


def _open_originals(target: Path, index_file: Path, n: int) -> Originals | None:
    """Both files whole and consistent (the index's last row ends where the pixels end), else None."""
    if not (target.is_file() and index_file.is_file()):
        return None
    try:
        index = np.load(index_file)
    except (ValueError, EOFError, OSError) as err:
        _damaged(index_file, err)
        return None
    if index.shape != (n, 3) or index.dtype != np.int64:
        return None
    end = int(index[-1, 0] + index[-1, 1] * index[-1, 2] * 3) if n else 0
    flat = _open(target, (end,))
    return None if flat is None else Originals(flat, index)


def _allocate(target: Path, shape: tuple[int, ...]) -> Path:
    """A temporary uint8 .npy of `shape` beside `target` (header and a sparse body), its space checked."""
    tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}.npy")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        need, free = int(np.prod(shape)), shutil.disk_usage(target.parent).free
        if need > free:
            raise UserError(
                f"data.cache_dir: the image cache needs {need / 1e9:.1f} GB but "
                f"{target.parent} has {free / 1e9:.1f} GB free; set data.cache_dir elsewhere"
            )
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    except OSError as err:
        raise UserError(
            f"data.cache_dir: cannot write the image cache in {target.parent} "
            f"({err.strerror or err}); set data.cache_dir to a writable folder"
        ) from None
    return tmp


def _run(jobs: list, fill, workers: int, n: int, what: str, renames: list) -> None:
    """Fill the temporary files by `jobs` (in `workers` processes), then move each (temporary, final) pair into
    place, the pixels last: a killed build leaves no file that looks finished."""
    interactive = sys.stdout.isatty()
    if not interactive:
        print(f"caching {n} images at {what} into {renames[-1][1]} ...", flush=True)
    start = time.perf_counter()
    try:
        with tqdm(total=n, desc="caching images", unit="img", disable=not interactive, file=sys.stdout) as bar:
            if min(workers, len(jobs)) > 1:  # a process per chunk at most
                with multiprocessing.Pool(min(workers, len(jobs))) as pool:
                    for done in pool.imap_unordered(fill, jobs):
                        bar.update(done)
            else:
                for job in jobs:
                    bar.update(fill(job))
        for source, final in renames:
            os.replace(source, final)
    except BaseException:
        for source, _ in renames:
            source.unlink(missing_ok=True)
        raise
    if not interactive:
        print(f"cached {n} images in {time.perf_counter() - start:.0f}s", flush=True)


def _fill(job: tuple[Path, int, list[str], Geometry]) -> int:
    """Decode one slice of images into the partly written cache file; returns how many."""
    tmp, start, paths, geometry = job
    pixels = np.load(tmp, mmap_mode="r+")
    for i, path in enumerate(paths, start):
        pixels[i] = geometry.view(path)
    pixels.flush()
    return len(paths)


def _fill_originals(job: tuple[Path, np.ndarray, list[str]]) -> int:
    tmp, index, paths = job
    flat = np.load(tmp, mmap_mode="r+")
    for (offset, h, w), path in zip(index, paths):
        original = read_checked(path, decode_original)
        if original.shape != (h, w, 3):
            now = f"{original.shape[1]}x{original.shape[0]}"
            raise UserError(f"{path}: the image changed while it was cached ({w}x{h}, now {now}); run again")
        flat[offset : offset + h * w * 3] = original.reshape(-1)
    flat.flush()
    return len(paths)
