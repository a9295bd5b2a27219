"""Image files: opened with a size limit, converted from any mode to 8-bit RGB, and every image of a
dataset checked before training starts. PIL and numpy only, so the check runs before torch loads.

- Size limit: an image of more than MAX_PIXELS pixels (PIL's own default limit, 89,478,485, about
  9459 x 9459) is refused by its header, before any decoding: a small file can declare a huge
  image (a "decompression bomb") that would take gigabytes to decode.
- Conversion to RGB (`to_rgb`): 16-bit and 32-bit integer images (PIL modes I;16*, I, such as a
  16-bit grayscale PNG) are scaled from 0..65535 to 0..255 (PIL's own convert would clip them to
  near-white); float images (F) from 0..1. Images with transparency (RGBA, LA, PA, a palette or
  colour key with transparency) are composited over white. Palette, grayscale, 1-bit and CMYK
  images go through PIL's convert. EXIF orientation is not applied (like torchvision's loader).
- The check (`check_images`): every image of both splits is opened and decoded at a reduced
  scale (JPEG's draft mode decodes at 1/8 size, so most of the cost is reading the file),
  in threads (PIL decodes without the GIL). Verdicts are cached per file, keyed by its path, size
  and modification time, in `image-check-*.json` in `derived_folder` (data.cache_dir, else
  data.root's `.cml-cache`, else CML_CACHE: never beside images outside data.root), so later runs
  only stat the files. Policy `data.bad_images`: "skip" (default) leaves unreadable images out of
  the dataset before the steps are made, and counts them in results' `skipped`
  (`train_bad_images`, `test_bad_images`); "stop" ends the run with the list. Either way the
  full list is written to `bad-images.txt` beside the cache.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cml.core.errors import UserError
from cml.datasets._types import MultiLabelData

MAX_PIXELS = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS default
CHECK_VERSION = 1  # bump when what the check refuses changes
# PIL warns above its limit and refuses above twice it; we refuse above it ourselves.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadImage(Exception):
    """An image file that cannot be used; the message says why."""


def open_image(path: str) -> Image.Image:
    """The opened image (header read, nothing decoded), within the size limit."""
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        size = os.path.getsize(path) if os.path.exists(path) else None
        raise BadImage(
            "an empty file" if size == 0 else "not an image PIL can read: unknown format or damaged header"
        ) from None
    except Image.DecompressionBombError as err:
        raise BadImage(f"refused as a possible decompression bomb ({err})") from None
    if img.width * img.height > MAX_PIXELS:
        img.close()
        raise BadImage(
            f"refused: {img.width}x{img.height} pixels is more than the limit of {MAX_PIXELS:,} (a decompression bomb?)"
        )
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB, by the rules in the module docstring."""
    if img.mode.startswith("I") or img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        scale = 1 / 257 if img.mode.startswith("I") else 255.0
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def decode_rgb(path: str, size: int, draft: bool = False) -> np.ndarray:
    """(size, size, 3) uint8: decoded, RGB, resized without keeping the aspect ratio (bilinear), as
    torchvision's `Resize((size, size))` on `Image.open(path).convert("RGB")` (KRT's, CSC's, PRS's
    loaders). DRAFT lets the JPEG decoder downscale first (by 1/2 to 1/8, still at least SIZE): about
    twice as fast on COCO-sized images, and a few grey levels from the full decode."""
    with open_image(path) as img:
        if draft:
            img.draft("RGB", (size, size))
        return np.asarray(to_rgb(img).resize((size, size), Image.BILINEAR))


def image_error_text(err: Exception, path: str) -> str:
    if isinstance(err, BadImage):
        return str(err)
    text = " ".join(str(err).replace(str(path), "").split()) or "no detail"
    return f"{type(err).__name__}: {text}"[:200]


def check_image(path: str) -> str | None:
    """None if the image decodes (at a reduced scale) and converts to RGB, else why not."""
    try:
        with open_image(path) as img:
            img.draft(img.mode, (1, 1))  # JPEG: decode at 1/8 scale; other formats: in full
            img.load()
            to_rgb(img)
        return None
    except Exception as err:  # PIL raises many types on damaged files (OSError, SyntaxError, ...)
        return image_error_text(err, path)


def derived_folder(data_cfg, paths: list[str]) -> Path:
    """Where files derived from the images go: only `data.cache_dir`, `data.root` (its `.cml-cache`,
    or CML_CACHE when it is read-only) or CML_CACHE. Never the images' common parent: for a list
    with absolute paths on two disks that is `/`."""
    from cml.datasets._cache import cache_folder

    if data_cfg.cache_dir or data_cfg.root:
        return cache_folder(Path(data_cfg.root or ".").expanduser(), data_cfg.cache_dir)
    common = os.path.commonpath({os.path.dirname(p) for p in paths})
    digest = hashlib.sha1(common.encode()).hexdigest()[:12]
    return Path(os.environ.get("CML_CACHE", "~/.cache/cml")).expanduser() / f"images-{digest}"


def _cache_file(paths: list[str], data_cfg) -> Path:
    root = os.path.commonpath({os.path.dirname(p) for p in paths})
    return derived_folder(data_cfg, paths) / f"image-check-{hashlib.sha1(root.encode()).hexdigest()[:12]}.json"


def _load_cache(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") == CHECK_VERSION and doc.get("max_pixels") == MAX_PIXELS:
            return doc["images"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass  # absent or damaged: check again
    return {}


def _save_cache(path: Path, images: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"version": CHECK_VERSION, "max_pixels": MAX_PIXELS, "images": images}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only place: check again next time


def find_bad_images(paths: list[str], cache_path: Path) -> dict[str, str]:
    """{path: reason} for the unusable images among `paths`; verdicts cached in `cache_path`."""
    cache = _load_cache(cache_path)
    verdicts: dict[str, str | None] = {}
    todo: list[tuple[str, list]] = []
    for path in dict.fromkeys(paths):
        try:
            stat = os.stat(path)
        except OSError as err:
            verdicts[path] = f"cannot be read ({err.strerror})"
            continue
        key = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(path)
        if isinstance(entry, list) and entry[:2] == key:
            verdicts[path] = entry[2]
        else:
            todo.append((path, key))
    if todo:
        start = time.perf_counter()
        if len(todo) > 2000:
            print(f"checking {len(todo)} images (once; the verdicts are cached) ...", flush=True)
        workers = min(16, os.cpu_count() or 1, len(todo))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for (path, key), verdict in zip(todo, pool.map(check_image, [p for p, _ in todo])):
                verdicts[path] = verdict
                cache[path] = [*key, verdict]
        _save_cache(cache_path, cache)
        if len(todo) > 2000:
            print(f"checked {len(todo)} images in {time.perf_counter() - start:.0f}s", flush=True)
    return {p: v for p, v in verdicts.items() if v is not None}


def check_images(data: MultiLabelData, data_cfg) -> MultiLabelData:
    """`data` without its unusable images (policy `data.bad_images`, see the module docstring)."""
    paths = data.train.paths + data.test.paths
    if not paths:
        return data
    cache_path = _cache_file(paths, data_cfg)
    bad = find_bad_images(paths, cache_path)
    if not bad:
        return data
    listing = cache_path.with_name("bad-images.txt")
    try:
        listing.write_text("".join(f"{p}\t{r}\n" for p, r in sorted(bad.items())), encoding="utf-8")
        where = f", all listed in {listing}"
    except OSError:
        where = ""
    shown = "; ".join(f"{p} ({r})" for p, r in sorted(bad.items())[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    count = f"{len(bad)} unreadable image{'s' if len(bad) > 1 else ''}"
    if data_cfg.bad_images == "stop":
        raise UserError(
            f"data.bad_images is 'stop' and the dataset has {count}: {shown}{more}{where}; "
            "replace or remove them, or set data.bad_images=skip to leave them out"
        )
    print(f"left out {count} (data.bad_images: skip): {shown}{more}{where}", flush=True)
    keep = {}
    skipped = dict(data.skipped)
    for part in ("train", "test"):
        split = getattr(data, part)
        keep[part] = np.array([i for i, p in enumerate(split.paths) if p not in bad], dtype=np.int64)
        if len(keep[part]) < len(split.paths):
            skipped[f"{part}_bad_images"] = len(split.paths) - len(keep[part])
    ignore = data.test_ignore[keep["test"]] if data.test_ignore is not None else None
    return MultiLabelData(
        data.name, data.class_names, data.train.subset(keep["train"]), data.test.subset(keep["test"]), skipped, ignore
    )


def load_data(data_cfg) -> MultiLabelData:
    """`data.dataset` built from `data` and its images checked: what every command trains on."""
    from cml.core.registry import DATASETS
    from cml.runtime.launch import launch_rank

    data = check_images(DATASETS.get(data_cfg.dataset).build(data_cfg), data_cfg)
    if data.skipped and launch_rank() == 0:
        counts = ", ".join(f"{key} {count}" for key, count in data.skipped.items())
        print(f"{data_cfg.dataset}: counted in results' skipped: {counts}", flush=True)
    return data
