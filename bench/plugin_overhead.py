"""Training cost of each plugin: cml's strategy with the plugin against a hand-written PyTorch loop
doing the same work, on the second step of a scenario (where the plugins act).

    OMP_NUM_THREADS=1 python bench/plugin_overhead.py --config configs/demo.yaml --set train.epochs=1 --repeats 5
    OMP_NUM_THREADS=1 python bench/plugin_overhead.py --config configs/demo_krt.yaml --set train.epochs=1 \
        --only none tdl pseudo-dynamic pod                  # KRT's plugins on the krt model
    python bench/plugin_overhead.py --only ewc ewc-online          # some settings only

Settings: none, lwf, ewc (separate), ewc-online, pseudo (fixed threshold), pseudo-dynamic (KRT's
calibrated threshold), lwf+pseudo, pod, tdl, each replay buffer (reservoir, prs, ocdm, herding;
`strategy.replay` as configured, filled from step 0) and the full stack
(lwf+ewc+pseudo+reservoir); a setting that does not apply to the configured model (tdl without
task tokens) is skipped with the declaration's reason. The hand-written loop (bench/_bare_loop.py)
does what each plugin adds, written out. Both sides start from the same step-0 model, previous
model, Fisher and buffer with the same seed, so they end with the same weights: the script
prints the largest weight difference as the check that the work is alike.

Each repeat runs both sides, alternating which goes first; the ratio is the median of the
repeats' ratios (bare time / cml time: 1 means no overhead), of wall time and of the process's
CPU time (`time.process_time`; on the CPU, with one thread, it is the work each side did, and a
virtual machine's noise or a neighbour's load stretches it much less than wall time; on CUDA
only the wall ratio means anything). One more cml run per setting,
untimed for the ratio, times every plugin hook and the strategy's forward, criterion, backward
and optimizer step (wall-clock timers, synchronised on CUDA): the breakdown says how much of
the time is the method's own work.
"""

from __future__ import annotations

import collections
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
from _bare_loop import bare_loop  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.evaluation.metrics import loss_metrics  # noqa: E402
from avalanche.models.dynamic_modules import avalanche_model_adaptation  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402

from cml.core.registry import PLUGINS  # noqa: E402
from cml.evaluation.progress import ProgressLogger  # noqa: E402
from cml.models._build import build_model  # noqa: E402
from cml.plugins._base import build_plugin  # noqa: E402
from cml.strategies._base import MultiLabelStrategy  # noqa: E402

REPLAY = ("reservoir", "prs", "ocdm", "herding")
SETTINGS = {
    "none": (),
    "lwf": ("lwf",),
    "ewc": ("ewc",),
    "ewc-online": ("ewc",),
    "pseudo": ("pseudo",),
    "pseudo-dynamic": ("pseudo",),
    "lwf+pseudo": ("lwf", "pseudo"),
    "pod": ("pod",),
    "tdl": ("tdl",),
    **{name: (name,) for name in REPLAY},
    "full": ("lwf", "ewc", "pseudo", "reservoir"),
}
TIMED_METHODS = ("forward", "criterion", "backward", "optimizer_step", "previous_outputs")


def setting_cfg(cfg, name):
    cfg = copy.deepcopy(cfg)
    cfg.strategy.ewc.mode = "online" if name == "ewc-online" else "separate"
    cfg.strategy.pseudo.dynamic = name == "pseudo-dynamic"
    return cfg


def refusal(cfg, name) -> str | None:
    """Why a setting does not apply to the configured model (tdl needs task tokens), or None."""
    for plugin in SETTINGS[name]:
        declaration = PLUGINS.get(plugin)
        reason = declaration.check and declaration.check(cfg, getattr(cfg.strategy, plugin))
        if reason:
            return reason
    return None


def make_strategy(model, cfg, scenario, device, plugins):
    evaluator = EvaluationPlugin(loss_metrics(epoch=True), loggers=[ProgressLogger(io.StringIO())])
    return MultiLabelStrategy(
        model=model,
        train_cfg=cfg.train,
        eval_batch_size=cfg.eval.batch_size,
        device=device,
        evaluator=evaluator,
        plugins=list(plugins),
        seed=cfg.seed,
    )


def time_hooks(strategy, device) -> dict[str, float]:
    """Wraps every hook a plugin defines and the strategy's main methods with wall-clock timers."""
    totals: dict[str, float] = collections.defaultdict(float)

    def wrap(owner, method, label):
        inner = getattr(owner, method)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                totals[label] += time.perf_counter() - start

        setattr(owner, method, timed)

    for plugin in strategy.plugins:
        for hook in dir(SupervisedPlugin):
            if (
                hook.startswith(("before_", "after_"))
                and "eval" not in hook
                and getattr(type(plugin), hook, None) not in (None, getattr(SupervisedPlugin, hook))
            ):
                wrap(plugin, hook, f"{type(plugin).__name__}.{hook}")
    for method in TIMED_METHODS:
        wrap(strategy, method, method)
    return totals


def cml_loop(model, previous, term, buffer, name, cfg, scenario, device, breakdown: bool = False):
    plugins = [build_plugin(p, setting_cfg(cfg, name), scenario) for p in SETTINGS[name]]
    strategy = make_strategy(model, cfg, scenario, device, plugins)
    for plugin in plugins:
        if hasattr(plugin, "terms"):
            plugin.terms = [term]
        if hasattr(plugin, "buffer"):
            plugin.buffer = buffer
    if any(getattr(p, "uses_previous_model", False) for p in plugins):
        strategy._previous_model = previous
    totals = time_hooks(strategy, device) if breakdown else None
    start, start_cpu = time.perf_counter(), time.process_time()
    strategy.train(scenario.benchmark.train_stream[1], eval_streams=[])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start, time.process_time() - start_cpu), totals


def filled_buffers(cfg, scenario, step0) -> dict:
    """Each replay policy's buffer after step 0 (its end-of-step update with the step-0 model)."""
    buffers = {}
    for policy in REPLAY:
        plugin = build_plugin(policy, cfg, scenario)
        first = scenario.steps[0].classes[0] if cfg.scenario.labels == "partial" else 0
        plugin.buffer.end_of_step(step0, scenario, scenario.steps[0], first, cfg.train.batch_size)
        buffers[policy] = plugin.buffer
    return buffers


def describe(totals: dict[str, float], seconds: float) -> str:
    nested = totals.pop("previous_outputs", 0.0)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    parts = [f"{label} {value:.2f}" for label, value in ranked if value >= 0.005]
    rest = seconds - sum(totals.values())
    return (
        f"{', '.join(parts)}, rest (loading, Avalanche's loop) {rest:.2f} of {seconds:.2f} s; "
        f"the previous model's forward (inside the hooks above) {nested:.2f} s"
    )


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="settings to run (default: all that apply to the configured model)",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    cfg, scenario, device = bench_setup(args)
    first, second = scenario.benchmark.train_stream[0], scenario.benchmark.train_stream[1]

    torch.manual_seed(cfg.seed)  # step 0 once: the previous model, its Fisher and buffers for every setting
    step0 = make_strategy(
        build_model(cfg), cfg, scenario, device, [build_plugin(p, cfg, scenario) for p in ("lwf", "ewc")]
    )
    step0.train(first, eval_streams=[])
    previous, term = step0.previous_model, step0.plugins[1].terms[0]
    buffers = filled_buffers(cfg, scenario, step0)
    initial = copy.deepcopy(step0.core_model).train()
    avalanche_model_adaptation(initial, second)  # grow the head for step 1 once, for both sides
    print(
        f"{cfg.model.backbone} at {cfg.data.image_size}px, batch {cfg.train.batch_size}, step 1: "
        f"{len(second.dataset)} images x {cfg.train.epochs} epochs, {device}, median of {args.repeats}",
        flush=True,
    )

    def run(side, name, breakdown=False):
        model, cfg_ = copy.deepcopy(initial), setting_cfg(cfg, name)
        policy = next((p for p in SETTINGS[name] if p in REPLAY), None)
        buffer = copy.deepcopy(buffers[policy]) if policy else None
        torch.manual_seed(cfg.seed)
        if side == "bare":
            return (
                model,
                bare_loop(
                    model,
                    previous,
                    copy.deepcopy(term),
                    buffer,
                    SETTINGS[name],
                    cfg_,
                    scenario,
                    device,
                    online_ewc=name == "ewc-online",
                ),
                None,
            )
        return model, *cml_loop(model, previous, copy.deepcopy(term), buffer, name, cfg_, scenario, device, breakdown)

    run("bare", "none")  # warm-up, not timed
    rows = []
    for name in args.only:
        reason = refusal(cfg, name)
        if reason:
            print(f"{name:<14} skipped: {reason}", flush=True)
            continue
        _, (seconds, _), totals = run("cml", name, breakdown=True)
        bare, ours, ratios, cpu_ratios, drift = [], [], [], [], 0.0
        for repeat in range(args.repeats):
            models = {}
            for side in ("bare", "cml") if repeat % 2 == 0 else ("cml", "bare"):
                models[side], elapsed, _ = run(side, name)
                (bare if side == "bare" else ours).append(elapsed)
            ratios.append(bare[-1][0] / ours[-1][0])
            cpu_ratios.append(bare[-1][1] / ours[-1][1])
            drift = max(
                drift,
                max(
                    float((p - q).abs().max())
                    for p, q in zip(models["bare"].state_dict().values(), models["cml"].state_dict().values())
                    if p.is_floating_point()
                ),
            )
        row = {
            "plugins": name,
            "bare_s": [b[0] for b in bare],
            "cml_s": [c[0] for c in ours],
            "bare_cpu_s": [b[1] for b in bare],
            "cml_cpu_s": [c[1] for c in ours],
            "cml_over_bare": statistics.median(ratios),
            "cml_over_bare_cpu": statistics.median(cpu_ratios),
            "max_weight_difference": drift,
            "breakdown_s": dict(totals),
            "breakdown_total_s": seconds,
        }
        rows.append(row)
        print(
            f"{name:<14} bare {statistics.median(row['bare_s']):7.2f} s  cml {statistics.median(row['cml_s']):7.2f} s"
            f"  cml/bare {row['cml_over_bare']:.3f} (repeats {', '.join(f'{r:.3f}' for r in ratios)}), CPU time "
            f"{row['cml_over_bare_cpu']:.3f} ({', '.join(f'{r:.3f}' for r in cpu_ratios)})  max diff {drift:.1e}"
            f"\n  breakdown: {describe(totals, seconds)}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "rows": rows}, indent=2) + "\n")
    print(f"\n{'plugins':<14} {'cml/bare':>9} {'CPU time':>9} {'bare work vs none':>18} {'max diff':>9}")
    base = next((statistics.median(r["bare_cpu_s"]) for r in rows if r["plugins"] == "none"), None)
    for r in rows:
        work = f"{statistics.median(r['bare_cpu_s']) / base:.2f}x" if base else "-"
        print(
            f"{r['plugins']:<14} {r['cml_over_bare']:9.3f} {r['cml_over_bare_cpu']:9.3f} {work:>18} "
            f"{r['max_weight_difference']:9.1e}"
        )


if __name__ == "__main__":
    main()
