"""How far cml's pixels are from the authors' pipelines where the two compute differently, on smooth
random images (photo-like: bicubic upsamplings of coarse noise), in grey levels of 0-255:

- the training crop (MULTI-LANE, `data.geometry: keep_aspect`): torchvision's `v2` resized crop
  on the uint8 tensor (antialiased bilinear) against the same crop box resized on the PIL image
  (PIL's bilinear), 200-640 px images cropped anywhere and resized to 224;
- JPEG draft mode (`data.jpeg_draft: true`, the demo configs): PIL's decoder downscaling a
  640 x 480 JPEG (quality 90) first, then the resize to 224 x 224, against the full decode and the
  same resize (KRT's, CSC's and PRS's loaders, cml's default).

    python bench/pixel_differences.py [--images 200] [--size 224]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as pil_functional
from torchvision.transforms.v2 import functional as tensor_functional


def smooth_image(rng, h: int, w: int) -> Image.Image:
    coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((w, h), Image.BICUBIC)


def crop_difference(rng, size: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(200, 640, 2))
    image = np.asarray(smooth_image(rng, h, w))
    ch, cw = int(rng.integers(20, h)), int(rng.integers(20, w))
    box = (int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)
    theirs = pil_functional.resized_crop(Image.fromarray(image), *box, [size, size], InterpolationMode.BILINEAR)
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)
    ours = tensor_functional.resized_crop(tensor, *box, [size, size], antialias=True).permute(1, 2, 0).numpy()
    return np.abs(np.asarray(theirs).astype(int) - ours.astype(int))


def draft_difference(rng, size: int) -> np.ndarray:
    encoded = io.BytesIO()
    smooth_image(rng, 480, 640).save(encoded, "JPEG", quality=90)
    full = Image.open(io.BytesIO(encoded.getvalue())).convert("RGB").resize((size, size), Image.BILINEAR)
    drafted = Image.open(io.BytesIO(encoded.getvalue()))
    drafted.draft("RGB", (size, size))
    drafted = drafted.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.abs(np.asarray(full).astype(int) - np.asarray(drafted).astype(int))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    result = {}
    for name, difference in (("crop", crop_difference), ("jpeg_draft", draft_difference)):
        rng = np.random.default_rng(0)
        diffs = [difference(rng, args.size) for _ in range(args.images)]
        result[name] = {
            "max": int(max(d.max() for d in diffs)),
            "mean": float(np.mean([d.mean() for d in diffs])),
            "fraction_differing": float(np.mean([(d > 0).mean() for d in diffs])),
        }
        r = result[name]
        print(
            f"{name}: {args.images} images to {args.size} px: mean {r['mean']:.2f}, at most {r['max']} grey "
            f"level(s) apart, {100 * r['fraction_differing']:.1f}% of the values differ"
        )
    return result


if __name__ == "__main__":
    main()
