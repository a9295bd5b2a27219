"""Training cost of the lwf, ewc and pseudo plugins: cml's strategy with each plugin against a bare
PyTorch loop doing the same work, on the second step of a scenario (where the plugins act).

    python bench/plugin_overhead.py --config configs/demo.yaml --repeats 3

The bare loop does by hand what each plugin adds: LwF's forward of the previous model and its
distillation loss, EWC's quadratic penalty and its Fisher pass after the step, the pseudo-labels;
for LwF and pseudo-labels also the copy of the model kept for the next step. Both sides start from
the same step-0 model, previous model and Fisher, with the same seed, so they also end with the
same weights: the script prints the largest weight difference as a check that the work is alike.
"""

from __future__ import annotations

import copy
import io
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

from _setup import bench_parser, bench_setup  # also puts the repository root on the path
warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)

import torch  # noqa: E402
from avalanche.evaluation.metrics import loss_metrics  # noqa: E402
from avalanche.models.dynamic_modules import avalanche_model_adaptation  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cml.evaluation.progress import ProgressLogger  # noqa: E402
from cml.run import build_model  # noqa: E402
from cml.models._base import input_stats  # noqa: E402
from cml.scenarios.images import normalize  # noqa: E402
from cml.plugins._base import build_plugin  # noqa: E402
from cml.losses.bce.loss import masked_bce  # noqa: E402
from cml.strategies._base import MultiLabelStrategy, frozen_copy  # noqa: E402
from cml.strategies._optim import build_optimizer  # noqa: E402
from cml.strategies._batches import StepBatches  # noqa: E402

SETTINGS = [(), ("lwf",), ("ewc",), ("pseudo",), ("lwf", "pseudo"), ("lwf", "ewc", "pseudo")]


def make_strategy(model, cfg, scenario, device, plugins):
    evaluator = EvaluationPlugin(loss_metrics(epoch=True), loggers=[ProgressLogger(io.StringIO())])
    return MultiLabelStrategy(model=model, train_cfg=cfg.train, eval_batch_size=cfg.eval.batch_size, device=device,
                              evaluator=evaluator, plugins=[build_plugin(p, cfg, scenario) for p in plugins], seed=cfg.seed)


def bare_fisher(model, dataset, batch_size, device):
    stats = input_stats(model)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    model.eval()
    batches = 0
    for x, y, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, y = normalize(x.to(device), stats), y.to(device)
        grads = torch.autograd.grad(masked_bce(model(x), y), list(params.values()), allow_unused=True)
        for name, grad in zip(params, grads):
            if grad is not None:
                fisher[name] += grad.pow(2)
        batches += 1
    model.train()
    return {n: f / batches for n, f in fisher.items()}


def bare_loop(model, previous, term, plugins, dataset, cfg, device) -> float:
    stats = input_stats(model)
    s, bs = cfg.strategy, cfg.train.batch_size
    batches = StepBatches(len(dataset), bs, (cfg.seed, 1), drop_incomplete=cfg.train.online)
    loader = DataLoader(dataset, batch_sampler=batches)  # the strategy's batches of step 1, in its order
    optimizer = build_optimizer(model, cfg.train)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg.train.epochs):
        for x, y, _ in loader:
            x, y = normalize(x.to(device), stats), y.to(device)
            if "lwf" in plugins or "pseudo" in plugins:
                with torch.no_grad():
                    old = previous(x)
            if "pseudo" in plugins:
                n = old.shape[1]
                sure = (torch.sigmoid(old) >= s.pseudo.threshold) & (y[:, :n] == 0)
                y = torch.cat([torch.where(sure, torch.ones_like(y[:, :n]), y[:, :n]), y[:, n:]], 1)
            logits = model(x)
            loss = masked_bce(logits, y)
            if "lwf" in plugins:
                T = s.lwf.temperature
                student, teacher = logits[:, : old.shape[1]] / T, old / T
                target = torch.sigmoid(teacher)
                kl = (F.binary_cross_entropy_with_logits(student, target, reduction="none")
                      - F.binary_cross_entropy_with_logits(teacher, target, reduction="none"))
                loss = loss + s.lwf.weight * (T ** 2 * kl.mean())
            if "ewc" in plugins:
                params = dict(model.named_parameters())
                penalty = torch.zeros((), device=device)
                for name, fisher in term["fisher"].items():
                    part = params[name][tuple(slice(0, k) for k in fisher.shape)]
                    penalty = penalty + (fisher * (part - term["anchor"][name]).pow(2)).sum()
                loss = loss + s.ewc.weight / 2 * penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if "ewc" in plugins:
        bare_fisher(model, dataset, bs, device)
    if "lwf" in plugins or "pseudo" in plugins:
        frozen_copy(model)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cml_loop(model, previous, term, plugins, experience, cfg, scenario, device) -> float:
    strategy = make_strategy(model, cfg, scenario, device, plugins)
    strategy.previous_model = previous if strategy.plugins and any(
        getattr(p, "uses_previous_model", False) for p in strategy.plugins) else None
    for plugin in strategy.plugins:
        if hasattr(plugin, "terms"):
            plugin.terms = [term]
    start = time.perf_counter()
    strategy.train(experience, eval_streams=[])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--json")
    args = parser.parse_args()
    cfg, scenario, device = bench_setup(args)
    first, second = scenario.benchmark.train_stream[0], scenario.benchmark.train_stream[1]

    torch.manual_seed(cfg.seed)  # step 0 once: the previous model and its Fisher for every setting
    step0 = make_strategy(build_model(cfg), cfg, scenario, device, ("lwf", "ewc"))
    step0.train(first, eval_streams=[])
    previous, term = step0.previous_model, step0.plugins[1].terms[0]
    initial = copy.deepcopy(step0.core_model).train()
    avalanche_model_adaptation(initial, second)  # grow the head for step 1 once, for both sides
    n_images = len(second.dataset) * cfg.train.epochs

    rows = []
    for plugins in SETTINGS:
        bare, ours, drift = [], [], 0.0
        for _ in range(args.repeats):
            a, b = copy.deepcopy(initial), copy.deepcopy(initial)
            torch.manual_seed(cfg.seed)
            bare.append(bare_loop(a, previous, term, plugins, second.dataset, cfg, device))
            torch.manual_seed(cfg.seed)
            ours.append(cml_loop(b, previous, copy.deepcopy(term), plugins, second, cfg, scenario, device))
            drift = max(drift, max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(),
                                                                               b.state_dict().values())
                                   if p.is_floating_point()))
        print(f"{'+'.join(plugins) or 'none'}: bare {bare} s, cml {ours} s", file=sys.stderr, flush=True)
        rows.append({"plugins": "+".join(plugins) or "none", "bare_s": statistics.median(bare),
                     "cml_s": statistics.median(ours), "max_weight_difference": drift})
    base = rows[0]["bare_s"]
    print(f"{cfg.model.backbone} at {cfg.data.image_size}px, batch {cfg.train.batch_size}, step 1: "
          f"{n_images} images per run, {device}, median of {args.repeats}")
    print(f"{'plugins':<16} {'bare img/s':>10} {'cml img/s':>10} {'cml/bare':>9} {'work vs none':>13} {'max diff':>9}")
    for r in rows:
        r["cml_over_bare"] = r["bare_s"] / r["cml_s"]
        r["work_over_none"] = r["bare_s"] / base
        print(f"{r['plugins']:<16} {n_images / r['bare_s']:10.1f} {n_images / r['cml_s']:10.1f} "
              f"{r['cml_over_bare']:9.3f} {r['work_over_none']:12.2f}x {r['max_weight_difference']:9.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n_images, "device": str(device), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
