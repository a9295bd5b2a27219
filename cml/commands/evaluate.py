"""`python -m cml eval RUN_DIR [--step K] [--set eval.KEY=VALUE ...] [--config OTHER.yaml] [--json FILE]`:
a saved model scored again, on the run's protocol.

The model after step K (default: the last completed one) is rebuilt from the run's config.yaml
(`build_model`, without reading `model.pretrained`: the saved weights replace it), regrown to the
saved head sizes and loaded from model.pt (model_step<K>.pt for an earlier step, written with
`log.save_models: every`; without model.pt, the last step's weights in checkpoint.pt). It is scored
on the test set of step K through the strategy's own evaluation and cml's metric, as the run
scored it after training step K: the same normalisation, batches and precision, so the run's
values come back exactly (`--set eval.batch_size` may move them in the last digits). Only the
`eval` section may be changed (threshold, strict, per_task, ...). `--config OTHER` takes the test
set from another config's data and scenario (and seed), which must give the model's classes, in
its order, after step K; the model, strategy and training settings stay the run's.

The arguments, the run directory, the config and the data are checked before torch is imported.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

from cml.config import Config, load_config
from cml.config.loading import parse_override
from cml.core.errors import UserError
from cml.datasets.imagefiles import load_data
from cml.protocols.steps import plan_steps
from cml.runtime.files import CHECKPOINT_FILE, MODEL_FILE, model_step_file, write_text_atomic

SHOWN = (("map", "mAP"), ("cp", "CP"), ("cr", "CR"), ("cf1", "CF1"), ("macro_f1", "macro_F1"))
SHOWN += (("op", "OP"), ("or", "OR"), ("of1", "OF1"))


@dataclasses.dataclass
class Request:
    run_dir: Path
    step: int
    model_file: Path
    cfg: Config  # the run's, with the --set eval overrides
    test_cfg: Config  # where the test set comes from: cfg, or cfg with OTHER's data and scenario
    results: dict
    source: str  # the config the test set comes from, as shown


def _results(run_dir: Path) -> dict:
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise UserError(f"{run_dir}/results.json cannot be read ({' '.join(str(err).split())[:160]})") from None
    steps = results.get("steps") if isinstance(results, dict) else None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) and "classes" in s for s in steps):
        raise UserError(f"{run_dir}/results.json: no completed step (not a cml run's results?)")
    if not isinstance(results.get("class_order"), list) or not isinstance(results.get("n_steps"), int):
        raise UserError(f"{run_dir}/results.json lacks class_order or n_steps (a run of an older cml?)")
    return results


def _eval_overrides(overrides: list[str]) -> None:
    for item in overrides:
        key, _ = parse_override(item)
        if not key.startswith("eval."):
            raise UserError(
                f"--set {item}: cml eval changes only eval.* keys (threshold, strict, batch_size, per_task, "
                "groups); the model, its data and its protocol are the run's (another test set: --config)"
            )


def _model_file(run_dir: Path, step: int, last: int) -> Path:
    if step < last:
        path = run_dir / model_step_file(step)
        if not path.is_file():
            raise UserError(
                f"--step {step}: {run_dir} has no {path.name}: the run kept the last step's model only; "
                "run it with --set log.save_models=every to keep every step's"
            )
        return path
    for name in (MODEL_FILE, model_step_file(step), CHECKPOINT_FILE):
        if (run_dir / name).is_file():
            return run_dir / name
    raise UserError(f"{run_dir}: no model.pt or checkpoint.pt: nothing to evaluate")


def _with_test_set(cfg: Config, other: Config) -> Config:
    return dataclasses.replace(cfg, data=other.data, scenario=other.scenario, seed=other.seed)


def _check_classes(request: Request, data) -> None:
    """OTHER's classes after step K, in order, must be the run's: output i of the model is class i."""
    steps = request.results["steps"][: request.step + 1]
    run_classes = [c for s in steps for c in s["classes"]]
    plan = plan_steps(request.test_cfg, data)
    if request.step >= len(plan.steps):
        raise UserError(f"--config {request.source}: it has {len(plan.steps)} steps, no step {request.step}")
    n_seen = plan.steps[request.step].n_seen
    other = plan.data.class_names[:n_seen]
    if other != run_classes:
        raise UserError(
            f"--config {request.source}: its classes after step {request.step} ({', '.join(other[:6])}"
            f"{', ...' if len(other) > 6 else ''}) are not the run's ({', '.join(run_classes[:6])}"
            f"{', ...' if len(run_classes) > 6 else ''}): the model scores the run's classes, in its order"
        )


def prepare(args) -> tuple[Request, object]:
    """Every check that needs no torch: the run directory, its files, the step, the overrides,
    the configs and the data (loaded and their images checked as a run checks them)."""
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    for name in ("config.yaml", "results.json"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: not a run directory (no {name})")
    results = _results(run_dir)
    last = len(results["steps"]) - 1
    step = last if args.step is None else args.step
    if not 0 <= step <= last:
        raise UserError(f"--step {args.step}: {run_dir} has completed steps 0 to {last}")
    _eval_overrides(args.overrides)
    cfg = load_config(run_dir / "config.yaml", args.overrides, resume=True)  # model.pretrained may be gone
    test_cfg, source = cfg, str(run_dir / "config.yaml")
    if args.config:
        test_cfg, source = _with_test_set(cfg, load_config(args.config, resume=True)), args.config
    request = Request(run_dir, step, _model_file(run_dir, step, last), cfg, test_cfg, results, source)
    data = load_data(test_cfg.data)
    if args.config:
        _check_classes(request, data)
    return request, data


def _saved_model(request: Request, path: Path) -> dict:
    """model.pt's content; if it holds another step than the last in results.json (a run killed
    between its writes), the checkpoint's weights where they are of that step."""
    from cml.runtime import export

    if path.name == CHECKPOINT_FILE:
        return export.from_checkpoint(path, request.results, request.cfg)
    saved = export.load(path)
    if saved["step"] != request.step and path.name == MODEL_FILE and (request.run_dir / CHECKPOINT_FILE).is_file():
        fallback = export.from_checkpoint(request.run_dir / CHECKPOINT_FILE, request.results, request.cfg)
        if fallback["step"] == request.step:
            request.model_file = request.run_dir / CHECKPOINT_FILE
            return fallback
    return saved


def score(request: Request, data) -> dict:
    """The saved model on step K's test set, through the strategy's evaluation: the run's values."""
    import torch
    from avalanche.training.plugins import EvaluationPlugin

    from cml.core.registry import STRATEGIES
    from cml.evaluation.scoring import build_metric
    from cml.models._build import build_model
    from cml.plugins._base import build_plugins
    from cml.runtime import export
    from cml.runtime.launch import loader_workers
    from cml.runtime.setup import pick_device, seed_everything, set_determinism
    from cml.scenarios.builder import build_scenario

    cfg, test_cfg = request.cfg, request.test_cfg
    saved = _saved_model(request, request.model_file)
    path = request.model_file  # the checkpoint's where model.pt was of another step
    if saved["class_order"] != request.results["class_order"]:
        raise UserError(f"{path}: its class order is not the one of {request.run_dir}/results.json (another run's?)")
    if saved["step"] != request.step:
        raise UserError(
            f"{path} holds the model of step {saved['step']}, not step {request.step}, the last in "
            f"{request.run_dir}/results.json (the run stopped between its writes: continue it with --resume)"
        )
    seed_everything(cfg.seed)
    set_determinism(cfg.train.deterministic)
    scenario = build_scenario(test_cfg, data)
    device = pick_device(cfg.train.device)
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=False)))
    export.load_into(model, saved, path)
    metric = build_metric(test_cfg, scenario)
    with warnings.catch_warnings():  # "No loggers specified": the values are printed here
        warnings.simplefilter("ignore", UserWarning)
        evaluator = EvaluationPlugin(metric, loggers=[])
    strategy = STRATEGIES.get(cfg.strategy.name).build(
        test_cfg,
        scenario,
        model=model,
        train_cfg=cfg.train,
        eval_batch_size=cfg.eval.batch_size,
        device=device,
        plugins=build_plugins(test_cfg, scenario),
        evaluator=evaluator,
        seed=cfg.seed,
    )
    if strategy.channels_last:  # as training left the model
        model.to(memory_format=torch.channels_last)
    workers = loader_workers(cfg.data.num_workers, device.type != "cpu")
    loader = {"num_workers": workers, "persistent_workers": False, "prefetch_factor": cfg.data.prefetch_factor}
    strategy.eval([scenario.benchmark.test_stream[request.step]], **loader)
    return {**metric.result(), "n_test": len(scenario.steps[request.step].test_rows)}


def eval_command(args) -> int:
    request, data = prepare(args)
    values = score(request, data)
    from cml.evaluation.results import json_safe

    cfg = request.cfg
    print(
        f"{request.run_dir}: model of step {request.step} ({request.model_file.name}) on the test set of step "
        f"{request.step} of {request.source}: {values['n_test']} images, threshold {cfg.eval.threshold}"
        f"{' (strict)' if cfg.eval.strict else ''}"
    )
    print(" ".join(f"{label:>8}" for _, label in SHOWN))
    print(" ".join(f"{float('nan') if values[k] is None else values[k]:8.2f}" for k, _ in SHOWN))
    if args.json:
        out = {
            "run_dir": str(request.run_dir),
            "step": request.step,
            "model_file": request.model_file.name,
            "test_config": request.source,
            "threshold": cfg.eval.threshold,
            "strict": cfg.eval.strict,
            **values,
        }
        write_text_atomic(Path(args.json), json.dumps(json_safe(out), indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
