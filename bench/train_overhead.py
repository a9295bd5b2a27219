"""Training throughput of cml's strategy (Avalanche template, plugins, metrics, loggers) against a
bare PyTorch loop doing the same work: same model, data, batch order, loss and optimizer.

    python bench/train_overhead.py --config configs/demo.yaml --repeats 3

Both sides start from the same weights and seed, so they also end with the same weights: the
script prints the largest weight difference as a check that the comparison is like for like.
"""

from __future__ import annotations

import copy
import io
import json
import statistics
import time
import warnings
from pathlib import Path

from _setup import bench_parser, bench_setup  # also puts the repository root on the path

warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402
from avalanche.evaluation.metrics import loss_metrics  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cml.evaluation.progress import ProgressLogger  # noqa: E402
from cml.models._base import input_stats, normalized  # noqa: E402
from cml.models._build import build_model  # noqa: E402
from cml.strategies._base import MultiLabelStrategy, build_criterion  # noqa: E402
from cml.strategies._batches import StepBatches  # noqa: E402
from cml.strategies._optim import build_optimizer  # noqa: E402


def bare_loop(model, dataset, cfg, device) -> float:
    stats = input_stats(model)
    batches = StepBatches(len(dataset), cfg.train.batch_size, (cfg.seed, 0), drop_incomplete=cfg.train.online)
    loader = DataLoader(
        dataset, batch_sampler=batches, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda"
    )  # the strategy's batches, in its order
    criterion = build_criterion(cfg.train)
    optimizer = build_optimizer(model, cfg.train)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg.train.epochs):
        for x, y, _ in loader:
            x, y = normalized(x.to(device, non_blocking=True), stats), y.to(device, non_blocking=True)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cml_strategy(model, experience, cfg, device) -> float:
    evaluator = EvaluationPlugin(loss_metrics(epoch=True), loggers=[ProgressLogger(io.StringIO())])
    strategy = MultiLabelStrategy(
        model=model,
        train_cfg=cfg.train,
        eval_batch_size=cfg.eval.batch_size,
        device=device,
        evaluator=evaluator,
        seed=cfg.seed,
    )
    start = time.perf_counter()
    strategy.train(experience, eval_streams=[], num_workers=cfg.data.num_workers)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--json")
    args = parser.parse_args()
    cfg, scenario, device = bench_setup(args)
    experience = scenario.benchmark.train_stream[0]
    torch.manual_seed(cfg.seed)
    initial = build_model(cfg)
    initial.train()
    initial.head.grow(len(experience.classes_in_this_experience))
    n_images = len(experience.dataset) * cfg.train.epochs

    bare, ours, drift = [], [], 0.0
    for _ in range(args.repeats):
        a, b = copy.deepcopy(initial).to(device), copy.deepcopy(initial)
        torch.manual_seed(cfg.seed)
        bare.append(bare_loop(a, experience.dataset, cfg, device))
        torch.manual_seed(cfg.seed)
        ours.append(cml_strategy(b, experience, cfg, device))
        drift = max(
            drift,
            max(
                float((p - q.to(p.device)).abs().max())
                for p, q in zip(a.state_dict().values(), b.state_dict().values())
                if p.is_floating_point()
            ),
        )
    result = {
        "images": n_images,
        "device": str(device),
        "bare_images_per_s": n_images / statistics.median(bare),
        "cml_images_per_s": n_images / statistics.median(ours),
        "cml_over_bare": statistics.median(bare) / statistics.median(ours),
        "max_weight_difference": drift,
    }
    print(
        f"{cfg.model.backbone} at {cfg.data.image_size}px, batch {cfg.train.batch_size}, {n_images} images "
        f"per run, {device}, median of {args.repeats}"
    )
    print(f"bare PyTorch loop  {result['bare_images_per_s']:8.1f} images/s")
    print(f"cml strategy       {result['cml_images_per_s']:8.1f} images/s")
    print(f"ratio cml/bare     {result['cml_over_bare']:8.3f}   (max weight difference {drift:.2e})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
