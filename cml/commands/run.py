"""One experiment, start to end: config -> scenario -> model -> strategy (+ plugins) ->
evaluation -> loggers, then train and evaluate step by step, saving results and a checkpoint
after every step so that nothing completed is lost and `--resume` can continue exactly."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from avalanche.logging import TensorboardLogger
from avalanche.training.plugins import EvaluationPlugin

from cml.config import Config
from cml.config.checks import model_options
from cml.core.errors import UserError
from cml.core.registry import MODELS, STRATEGIES
from cml.datasets._types import MultiLabelData
from cml.evaluation.hparams import log_hparams, log_summary
from cml.evaluation.loss import EpochLossOnDevice
from cml.evaluation.metric_plugin import MultiLabelMetrics
from cml.evaluation.progress import ProgressLogger
from cml.evaluation.results import ROW_HEADER, build_summary, format_row, format_summary, write_summary
from cml.models._parts import check_input_size
from cml.plugins._base import build_plugins
from cml.protocols.steps import untrainable_step
from cml.runtime import checkpoint, distributed
from cml.runtime.files import weights_identity
from cml.runtime.launch import loader_workers
from cml.runtime.signals import deferred_signals
from cml.scenarios.builder import build_scenario


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_determinism(deterministic: bool) -> None:
    """train.deterministic: CUDA's reproducibility switches (the CPU is deterministic already).
    Off, cuDNN autotunes each convolution shape (`benchmark`, fastest kernels, not bit for bit
    reproducible); on, torch refuses ops without a deterministic kernel, cuDNN uses only
    deterministic ones, and cuBLAS a fixed workspace (read at CUDA's first matmul, after this)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda was asked for but no CUDA device is available")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def build_model(cfg: Config) -> torch.nn.Module:
    """The declared model with its declared options, built for `data.image_size` if it declares
    `uses_image_size` (SRN's regulariser kernel follows the input size)."""
    declaration = MODELS.get(cfg.model.name)
    image_size = cfg.data.image_size if declaration.uses_image_size else None
    model = declaration.build(cfg.model.backbone, cfg.model.pretrained, model_options(cfg), image_size=image_size)
    if isinstance(getattr(model, "backbone", None), torch.nn.Module):
        check_input_size(model.backbone, cfg.model.backbone, cfg.data.image_size)
    return model


def say(*args, **kwargs) -> None:
    """Print on rank 0 only (torchrun)."""
    if distributed.is_main():
        print(*args, **kwargs)


def run(cfg: Config, data: MultiLabelData, run_dir: Path, resume: bool = False) -> dict:
    """Under torchrun every rank runs this; rank 0 alone writes the run directory and prints."""
    seed_everything(cfg.seed)
    set_determinism(cfg.train.deterministic)
    with distributed.main_first():  # rank 0 builds the image cache
        scenario = build_scenario(cfg, data)
    problem = untrainable_step(cfg, scenario.steps, scenario.class_names)
    if problem:  # before any training (plan_steps itself only describes the protocol)
        raise UserError(problem)
    bench, steps = scenario.benchmark, scenario.steps
    device = distributed.device(pick_device(cfg.train.device))
    model = build_model(cfg)
    tasks = [s.test_tasks for s in steps] if cfg.eval.per_task else None
    metric = MultiLabelMetrics(
        scenario.class_names,
        [s.classes for s in steps],
        cfg.eval.threshold,
        cfg.eval.strict,
        tasks,
        scenario.class_groups,
    )
    main = distributed.is_main()
    tensorboard = TensorboardLogger(run_dir / "tb") if main else None
    evaluator = EvaluationPlugin(
        EpochLossOnDevice(), metric, loggers=[tensorboard, ProgressLogger(every_s=cfg.log.every_s)] if main else []
    )
    plugins = build_plugins(cfg, scenario)
    strategy = STRATEGIES.get(cfg.strategy.name).build(
        cfg,
        scenario,
        model=model,
        train_cfg=cfg.train,
        eval_batch_size=cfg.eval.batch_size,
        device=device,
        plugins=plugins,
        evaluator=evaluator,
        seed=cfg.seed,
    )
    if main and not resume:  # a resumed run's event files already hold them
        log_hparams(tensorboard.writer, cfg)

    records: list[dict] = []
    start = 0
    extra = {
        "dataset": cfg.data.dataset,
        "strategy": cfg.strategy.name,
        "class_order": scenario.class_names,
        "skipped": scenario.data.skipped,
        "n_steps": len(steps),
        "data_digest": checkpoint.content_digest(data),
        "pretrained": weights_identity(cfg.model.pretrained),
    }
    identity = checkpoint.data_identity(scenario.data)
    if scenario.class_groups is not None:
        extra["class_groups"] = {g: [scenario.class_names[c] for c in cs] for g, cs in scenario.class_groups.items()}
    if resume:  # every rank loads the checkpoint
        state = checkpoint.load(run_dir, len(steps))
        checkpoint.check_data(run_dir, state, scenario.data)
        checkpoint.restore(run_dir, state, model, strategy, bench.train_stream)
        records, start = state["steps"], state["step"] + 1
        if main:  # a kill may have left them behind the checkpoint
            write_summary(run_dir, build_summary(records, extra))
        say(f"resuming {run_dir} after step {state['step']}")

    workers = loader_workers(cfg.data.num_workers, device.type != "cpu")  # `auto`, resolved here alone
    loader_args = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "prefetch_factor": cfg.data.prefetch_factor,
    }
    processes = f", {distributed.world()} processes" if distributed.world() > 1 else ""
    say(
        f"{cfg.data.dataset}: {len(scenario.class_names)} classes, {len(steps)} steps "
        f"({'-'.join(str(len(s.classes)) for s in steps)}), strategy {cfg.strategy.name}, "
        f"model {cfg.model.name}/{cfg.model.backbone}, device {device}{processes}; run directory {run_dir}"
    )
    say(ROW_HEADER)
    for row_index, record in enumerate(records):
        say(format_row(row_index, record))
    summary = None
    for t in range(start, len(steps)):
        strategy.train(bench.train_stream[t], eval_streams=[], **loader_args)
        strategy.eval([bench.test_stream[t]], **loader_args)
        values = metric.result()
        records.append(
            {
                "classes": [scenario.class_names[c] for c in steps[t].classes],
                "n_train": strategy.train_size,
                "n_trained": strategy.trained_size,
                "n_test": len(steps[t].test_rows),
                "skipped_batches": strategy.skipped_batches,
                "skipped_updates": strategy.skipped_updates,
                **strategy.step_record(),
                **values,
            }
        )
        summary = build_summary(records, extra)
        rng = checkpoint.rank_rng_states()  # every rank's, gathered before rank 0 saves
        if main:
            with deferred_signals():  # checkpoint first: results are never ahead of it
                checkpoint.save(run_dir, t, strategy, summary["steps"], identity, rng)
                write_summary(run_dir, summary)
            log_summary(tensorboard.writer, summary, t)
        say(format_row(t, summary["steps"][t]), flush=True)
    if summary is None:
        summary = build_summary(records, extra)  # a resume with no step left: written on resuming
    say(format_summary(summary))
    return summary
