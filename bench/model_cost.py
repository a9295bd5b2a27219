"""Parameter count and forward FLOPs of each cml model beside `linear`, counted by
`torch.utils.flop_counter.FlopCounterMode` (matrix products and convolutions, 2 FLOPs per
multiply-add; element-wise ops are not counted).

    python bench/model_cost.py                       # ResNet-101, 448 px, 80 classes (docs/models.md)
    python bench/model_cost.py --backbone resnet10t --image-size 32 --classes 24   # the demo

Models are built and run on PyTorch's "meta" device: shapes only, no memory or compute, so the
count is exact and takes seconds whatever the machine.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from cml.core.registry import MODELS  # noqa: E402

MODEL_NAMES = MODELS.names()


def cost(name: str, backbone: str, image_size: int, classes: int) -> tuple[int, float]:
    with torch.device("meta"):
        declaration = MODELS.get(name)  # default options
        options = declaration.options() if declaration.options else None
        model = declaration.build(backbone, False, options, num_classes=classes, image_size=image_size).eval()
        counter = FlopCounterMode(display=False)
        with counter:  # not under no_grad: its module tracker trips on views of parameters there
            model(torch.zeros(1, 3, image_size, image_size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--models", nargs="+", default=MODEL_NAMES)
    args = parser.parse_args()
    rows = {name: cost(name, args.backbone, args.image_size, args.classes) for name in args.models}
    base_params, base_flops = rows.get("linear", next(iter(rows.values())))
    print(f"{args.backbone}, {args.image_size}x{args.image_size}, {args.classes} classes, batch 1, default options")
    print("| model | parameters (M) | forward GFLOPs | vs linear: parameters | vs linear: GFLOPs |")
    print("|---|---|---|---|---|")
    for name, (params, flops) in rows.items():
        print(
            f"| `{name}` | {params / 1e6:.2f} | {flops / 1e9:.3f} | {params / base_params:.3f}x | "
            f"{flops / base_flops:.3f}x |"
        )


if __name__ == "__main__":
    main()
