"""CPU cost of the training augmentation per image in the loader: RandAugment (UDA and torchvision
variants) + Cutout 0.5 on one 224 px uint8 image, one thread (docs/scaling.md).
Usage: OMP_NUM_THREADS=1 python bench/augment_cost.py"""

import time
import types

import torch

from cml.scenarios.augment import Augment

torch.set_num_threads(1)
image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
for variant in ("uda", "torchvision"):
    cfg = types.SimpleNamespace(crop_scale=None, hflip=False, cutout=0.5, randaugment=True, randaugment_variant=variant)
    augment = Augment(cfg, 224)
    torch.manual_seed(0)
    for _ in range(20):  # warm-up
        augment(image)
    start, n = time.perf_counter(), 300
    for _ in range(n):
        augment(image)
    print(f"{variant}: {(time.perf_counter() - start) / n * 1e3:.2f} ms per image (RandAugment + Cutout 0.5)")
