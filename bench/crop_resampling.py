"""How far cml's training crop (torchvision's `v2` resized crop on the uint8 tensor, antialiased
bilinear) is from MULTI-LANE's (the same crop box resized on the PIL image, PIL's bilinear), on
smooth random images of 200-640 px cropped anywhere and resized to 224 (docs/methods.md).

    python bench/crop_resampling.py [--crops 200] [--size 224]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as pil_functional
from torchvision.transforms.v2 import functional as tensor_functional


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    worst, differing = 0, []
    for _ in range(args.crops):
        h, w = (int(v) for v in rng.integers(200, 640, 2))
        coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))  # smooth, like photos
        ch, cw = int(rng.integers(20, h)), int(rng.integers(20, w))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        box, out = (top, left, ch, cw), [args.size, args.size]
        theirs = pil_functional.resized_crop(Image.fromarray(image), *box, out, InterpolationMode.BILINEAR)
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)
        ours = tensor_functional.resized_crop(tensor, *box, out, antialias=True)
        diff = np.abs(np.asarray(theirs).astype(int) - ours.permute(1, 2, 0).numpy().astype(int))
        worst, differing = max(worst, int(diff.max())), differing + [float((diff > 0).mean())]
    result = {"crops": args.crops, "max_abs_diff": worst, "fraction_differing": float(np.mean(differing))}
    print(
        f"{args.crops} crops to {args.size} px: at most {worst} grey level(s) apart, "
        f"{100 * result['fraction_differing']:.1f}% of the values differ"
    )
    return result


if __name__ == "__main__":
    main()
