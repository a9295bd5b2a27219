"""One experiment as an object: config -> scenario -> model -> strategy (+ plugins) -> evaluation
-> loggers, then train and evaluate step by step, saving results and a checkpoint after every
step so that nothing completed is lost and a resume continues exactly.

`python -m cml run` builds one (`cml.commands.run`); from Python it is the public API
(`cml.Experiment`, docs/api.md): its parts (`benchmark`, `model`, `plugins`, `strategy`,
`metric`) can be read before training, extra Avalanche plugins, metrics and loggers join the
config's, and the run directory it writes is the CLI's (config.yaml, results.json, checkpoint,
TensorBoard), so `compare`, `--resume` and TensorBoard read it."""

from __future__ import annotations

import os
import types
from pathlib import Path

import yaml
from avalanche.logging import TensorboardLogger
from avalanche.training.plugins import EvaluationPlugin

from cml.config import Config, load_config, to_dict
from cml.core.errors import UserError
from cml.core.registry import STRATEGIES
from cml.datasets._types import MultiLabelData
from cml.datasets.imagefiles import load_data
from cml.evaluation.hparams import log_hparams
from cml.evaluation.loggers import build_loggers, build_metrics, close_loggers, log_summary
from cml.evaluation.loss import EpochLossOnDevice
from cml.evaluation.progress import ProgressLogger
from cml.evaluation.results import ROW_HEADER, build_summary, format_row, format_summary, write_summary
from cml.evaluation.scoring import build_metric
from cml.models._build import build_model
from cml.plugins._base import build_plugins
from cml.protocols.steps import untrainable_step
from cml.runtime import checkpoint, distributed, export
from cml.runtime.files import write_text_atomic
from cml.runtime.launch import loader_workers
from cml.runtime.lock import RunLock
from cml.runtime.run_directory import check_run_directory
from cml.runtime.run_facts import StepFacts, environment
from cml.runtime.setup import pick_device, seed_everything, set_determinism
from cml.runtime.signals import deferred_signals
from cml.runtime.starting_weights import starting_weights
from cml.scenarios.builder import build_scenario


def say(*args, **kwargs) -> None:
    """Print on rank 0 only (torchrun)."""
    if distributed.is_main():
        print(*args, **kwargs)


class Experiment:
    """Under torchrun every rank builds one; rank 0 alone writes the run directory and prints.

    `plugins`, `metrics`, `loggers`: Avalanche plugins added after the config's plugins, metrics
    added to the evaluation plugin beside cml's and `log.metrics`, loggers beside `log.loggers` and
    the progress line.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | os.PathLike,
        *,
        data: MultiLabelData | None = None,
        resume: bool = False,
        plugins=(),
        metrics=(),
        loggers=(),
        verbose: bool = True,
    ):
        self.cfg, self.run_dir, self.verbose = cfg, Path(run_dir), verbose
        self._lock: RunLock | None = None
        self._shown_header = False
        seed_everything(cfg.seed)
        set_determinism(cfg.train.deterministic)
        data = data if data is not None else load_data(cfg.data)
        with distributed.main_first():  # rank 0 builds the image cache
            self.scenario = build_scenario(cfg, data)
        problem = untrainable_step(cfg, self.scenario.steps, self.scenario.class_names)
        if problem:  # before any training (plan_steps itself only describes the protocol)
            raise UserError(problem)
        self.device = distributed.device(pick_device(cfg.train.device))
        pretrained, self.pretrained_identity = starting_weights(cfg.model.pretrained, self.run_dir, resume)
        self.model = build_model(cfg, pretrained)
        self.metric = build_metric(cfg, self.scenario)
        main = distributed.is_main()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        self.loggers = build_loggers(cfg, self.run_dir, main)  # log.loggers; [] but on rank 0
        self.tensorboard = next((lg for lg in self.loggers if isinstance(lg, TensorboardLogger)), None)
        shown = [*self.loggers, ProgressLogger(every_s=cfg.log.every_s)] if main and verbose else self.loggers
        self.evaluator = EvaluationPlugin(
            EpochLossOnDevice(),
            self.metric,
            *(build_metrics(cfg, self.device) if main else []),
            *metrics,
            loggers=[*shown, *loggers] if main else [],
        )
        self.plugins = [*build_plugins(cfg, self.scenario), *plugins]
        self.strategy = STRATEGIES.get(cfg.strategy.name).build(
            cfg,
            self.scenario,
            model=self.model,
            train_cfg=cfg.train,
            eval_batch_size=cfg.eval.batch_size,
            device=self.device,
            plugins=self.plugins,
            evaluator=self.evaluator,
            seed=cfg.seed,
        )
        if self.tensorboard is not None and not resume:  # a resumed run's event files already hold them
            log_hparams(self.tensorboard.writer, cfg)
        self.records: list[dict] = []
        self.next_step = 0
        self.extra = self._run_facts(data)
        self.identity = checkpoint.data_identity(self.scenario.data)
        if resume:  # every rank loads the checkpoint
            state = checkpoint.load(self.run_dir, len(self.steps))
            checkpoint.check_data(self.run_dir, state, self.scenario.data)
            checkpoint.restore(self.run_dir, state, self.model, self.strategy, self.benchmark.train_stream)
            self.records, self.next_step = state["steps"], state["step"] + 1
            if main:  # a kill may have left them behind the checkpoint
                write_summary(self.run_dir, build_summary(self.records, self.extra))
            self._say(f"resuming {self.run_dir} after step {state['step']}")
        workers = loader_workers(cfg.data.num_workers, self.device.type != "cpu")  # `auto`, resolved here alone
        self.loader_args = {
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "prefetch_factor": cfg.data.prefetch_factor,
        }

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike | Config | None = None,
        overrides: list[str] = (),
        *,
        out: str | os.PathLike,
        resume: bool = False,
        allow_imports: bool = False,
        **parts,
    ) -> Experiment:
        """From a YAML file (or none: the defaults) with `--set`-style overrides, or a `Config`;
        `out` is checked as the CLI checks `--out` (a new directory, or with `resume` one holding a
        run of this config) and locked until `run()` ends or `close()`. A config's `imports:` run
        only with `allow_imports` (the command line's `--allow-imports`)."""
        if isinstance(config, Config):
            if overrides:
                raise UserError("overrides: apply them to a config file or to the defaults (config=None), not a Config")
            cfg = config
        else:
            cfg = load_config(config, list(overrides), resume=resume, allow_imports=allow_imports)
        run_dir = Path(out)
        lock = None
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = RunLock(run_dir)
            try:
                check_run_directory(types.SimpleNamespace(resume=resume), cfg, run_dir)
            except UserError:
                lock.release()
                raise
        try:
            experiment = cls(cfg, run_dir, resume=resume, **parts)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        experiment._lock = lock
        return experiment

    @property
    def benchmark(self):
        """The Avalanche benchmark: `train_stream[t]`, `test_stream[t]` per step."""
        return self.scenario.benchmark

    @property
    def steps(self):
        return self.scenario.steps

    @property
    def finished(self) -> bool:
        return self.next_step >= len(self.steps)

    def train_step(self) -> dict:
        """Train the next step, evaluate it on its test set, save checkpoint and results; its record."""
        if self.finished:
            raise UserError(f"{self.run_dir}: all {len(self.steps)} steps are trained")
        t, steps, strategy = self.next_step, self.steps, self.strategy
        self._header()
        facts = StepFacts(self.device)
        strategy.train(self.benchmark.train_stream[t], eval_streams=[], **self.loader_args)
        facts.trained()
        strategy.eval_draws_rng = True  # the step's own evaluation: one base seed, as every run has drawn
        try:
            strategy.eval([self.benchmark.test_stream[t]], **self.loader_args)
        finally:
            strategy.eval_draws_rng = False
        self.records.append(
            {
                "classes": [self.scenario.class_names[c] for c in steps[t].classes],
                "n_train": strategy.train_size,
                "n_trained": strategy.trained_size,
                "n_test": len(steps[t].test_rows),
                "skipped_batches": strategy.skipped_batches,
                "skipped_updates": strategy.skipped_updates,
                **strategy.step_record(),
                **self.metric.result(),
                **facts.record(strategy),  # wall time, images/s, peak memory, parameters
            }
        )
        summary = self.summary()
        rng = checkpoint.rank_rng_states()  # every rank's, gathered before rank 0 saves
        if distributed.is_main():
            with deferred_signals():  # checkpoint first: results are never ahead of it
                checkpoint.save(self.run_dir, t, strategy, summary["steps"], self.identity, rng)
                export.save(self.run_dir, strategy.core_model, self.cfg, self.scenario, t)  # model.pt
                write_summary(self.run_dir, summary)
            log_summary(self.loggers, summary, t)
        self._say(format_row(t, summary["steps"][t]), flush=True)
        self.next_step = t + 1
        return summary["steps"][t]

    def run(self) -> dict:
        """Every step left, then the summary (what results.json holds); the lock is released."""
        try:
            self._header()
            while not self.finished:
                self.train_step()
            summary = self.summary()
            self._say(format_summary(summary))
            return summary
        finally:
            self.close()

    def summary(self) -> dict:
        return build_summary(self.records, self.extra)

    def close(self) -> None:
        """Release the run directory's lock (taken by `from_config`), flush TensorBoard, end W&B's run."""
        close_loggers(self.loggers)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run_facts(self, data: MultiLabelData) -> dict:
        cfg, scenario = self.cfg, self.scenario
        extra = {
            "dataset": cfg.data.dataset,
            "strategy": cfg.strategy.name,
            "class_order": scenario.class_names,
            "skipped": scenario.data.skipped,
            "n_steps": len(scenario.steps),
            "data_digest": checkpoint.content_digest(data),
            "pretrained": self.pretrained_identity,
            "environment": environment(self.device, distributed.world()),
        }
        if scenario.class_groups is not None:
            names = scenario.class_names
            extra["class_groups"] = {g: [names[c] for c in cs] for g, cs in scenario.class_groups.items()}
        return extra

    def _header(self) -> None:
        if self._shown_header:
            return
        self._shown_header = True
        cfg, steps = self.cfg, self.steps
        processes = f", {distributed.world()} processes" if distributed.world() > 1 else ""
        self._say(
            f"{cfg.data.dataset}: {len(self.scenario.class_names)} classes, {len(steps)} steps "
            f"({'-'.join(str(len(s.classes)) for s in steps)}), strategy {cfg.strategy.name}, "
            f"model {cfg.model.name}/{cfg.model.backbone}, device {self.device}{processes}; "
            f"run directory {self.run_dir}"
        )
        self._say(ROW_HEADER)
        for row_index, record in enumerate(self.records):
            self._say(format_row(row_index, record))

    def _say(self, *args, **kwargs) -> None:
        if self.verbose:
            say(*args, **kwargs)
