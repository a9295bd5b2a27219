"""Training throughput with replay: cml's strategy with a buffer plugin against a bare PyTorch loop
doing the same work, the same concatenated batches.

    python bench/replay_training.py --config configs/demo.yaml --policy prs --repeats 3

Both sides train the first step of the scenario online (one pass, PRS's setting): each incoming
batch is joined by min(|M|, batch) images drawn from a buffer (`strategy.replay.size`, default
here 200), one gradient step is taken, then the incoming batch is offered to the buffer. The bare
loop does this by hand with the same buffer class: DataLoader, draw, read the replayed images
through `scenario.train_images`, concatenate, normalise, forward, loss, backward, Adam step,
offer. Both start from the same weights, seeds and buffer seed, so they end with the same
weights: the script prints the largest weight difference as the like-for-like check. Images/s
counts every image forwarded (incoming and replayed).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings

from _setup import bench_parser, bench_setup  # also puts the repository root on the path

warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402
from avalanche.evaluation.metrics import loss_metrics  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cml.evaluation.progress import ProgressLogger  # noqa: E402
from cml.models._base import input_stats, normalized  # noqa: E402
from cml.models._build import build_model  # noqa: E402
from cml.plugins._base import build_plugin  # noqa: E402
from cml.strategies._base import MultiLabelStrategy, build_criterion  # noqa: E402
from cml.strategies._batches import StepBatches  # noqa: E402
from cml.strategies._optim import build_optimizer  # noqa: E402


class ImageCounter:
    def __init__(self):
        self.images = 0

    def before_forward(self, strategy, **kwargs):
        self.images += len(strategy.mb_x)


def bare_loop(model, scenario, buffer, cfg, device) -> tuple[float, int]:
    stats = input_stats(model)
    step = scenario.steps[0]
    dataset = scenario.benchmark.train_stream[0].dataset
    batches = StepBatches(len(dataset), cfg.train.batch_size, (cfg.seed, 0), drop_incomplete=cfg.train.online)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,  # the strategy's batches, in its order
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
    )
    criterion = build_criterion(cfg.train)
    optimizer = build_optimizer(model, cfg.train)
    model.train()
    images = 0
    start = time.perf_counter()
    for x, y, rows in loader:
        incoming = (rows.numpy().copy(), y.numpy().copy())
        k = min(len(buffer), int(cfg.strategy.replay.batch_ratio * len(rows) + 0.5))
        if k:
            slots = buffer.draw(k)
            stored = scenario.train_images(buffer.rows[slots], buffer.targets[slots])
            x = torch.cat([x, torch.stack([stored[i][0] for i in range(k)])])
            y = torch.cat([y, stored.targets])
        x, y = normalized(x.to(device, non_blocking=True), stats), y.to(device, non_blocking=True)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        buffer.offer(*incoming, step.classes[0])
        images += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, images


def cml_strategy(model, scenario, plugin, cfg, device) -> tuple[float, int]:
    counter = ImageCounter()
    evaluator = EvaluationPlugin(loss_metrics(epoch=True), loggers=[ProgressLogger(io.StringIO())])
    strategy = MultiLabelStrategy(
        model=model,
        train_cfg=cfg.train,
        eval_batch_size=cfg.eval.batch_size,
        device=device,
        plugins=[plugin, counter],
        evaluator=evaluator,
        seed=cfg.seed,
    )
    start = time.perf_counter()
    strategy.train(scenario.benchmark.train_stream[0], eval_streams=[], num_workers=cfg.data.num_workers)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, counter.images


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--policy", default="prs", choices=["prs", "ocdm", "reservoir"])
    parser.add_argument("--size", type=int, default=200, help="buffer size")
    args = parser.parse_args()
    cfg, scenario, device = bench_setup(
        args,
        [
            f"strategy.plugins=[{args.policy}]",
            f"strategy.replay.size={args.size}",
            "train.online=true",
            "strategy.replay.mix=batch",
        ],
    )
    torch.manual_seed(cfg.seed)
    initial = build_model(cfg)
    initial.train()
    initial.head.grow(scenario.steps[0].n_seen)

    bare, ours, drift, images = [], [], 0.0, 0
    for repeat in range(args.repeats + 1):  # the first round warms up caches and is not timed
        a, b = copy.deepcopy(initial).to(device), copy.deepcopy(initial)
        for side in ("bare", "cml") if repeat % 2 == 0 else ("cml", "bare"):  # alternate who goes first
            torch.manual_seed(cfg.seed)
            if side == "bare":
                seconds, images = bare_loop(a, scenario, build_plugin(args.policy, cfg, scenario).buffer, cfg, device)
                bare.append(seconds)
            else:
                seconds, counted = cml_strategy(b, scenario, build_plugin(args.policy, cfg, scenario), cfg, device)
                ours.append(seconds)
        assert counted == images, (counted, images)
        drift = max(
            drift,
            max(
                float((p - q.to(p.device)).abs().max())
                for p, q in zip(a.state_dict().values(), b.state_dict().values())
                if p.is_floating_point()
            ),
        )
    bare_rate, cml_rate = images / statistics.median(bare[1:]), images / statistics.median(ours[1:])
    print(
        f"{cfg.model.backbone} at {cfg.data.image_size}px, online, batch {cfg.train.batch_size} + replay from a "
        f"{args.policy} buffer of {args.size}, {images} images forwarded per run, {device}, median of {args.repeats}"
    )
    print(f"bare PyTorch loop  {bare_rate:8.1f} images/s")
    print(f"cml strategy       {cml_rate:8.1f} images/s")
    print(f"ratio cml/bare     {cml_rate / bare_rate:8.3f}   (max weight difference {drift:.2e})")


if __name__ == "__main__":
    main()
