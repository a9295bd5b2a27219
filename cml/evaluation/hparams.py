"""The run's config as TensorBoard hyperparameters (the HParams dashboard) and its summary metrics.

Written into the run's own `tb/` event files through the Avalanche TensorboardLogger's writer:
`SummaryWriter.add_hparams` would put them in a new sub-folder, which TensorBoard shows as
another run, apart from the run's scalars. The metrics are the running Avg mAP, Last mAP and
average forgetting, logged after every step, so HParams shows the latest values of any run,
finished or not. Runs can then be filtered by strategy, plugins, model and backbone, and by the
options of the chosen strategy (`l3a.base_epochs`), of its plugins and of the model
(`model.options.hidden`), flattened to dotted keys.
"""

from __future__ import annotations

import dataclasses

from torch.utils.tensorboard.summary import hparams

from cml.core.registry import PLUGINS, STRATEGIES, section_of

METRICS = {"avg_map": "summary/avg_mAP", "last_map": "summary/last_mAP", "avg_forgetting": "summary/avg_forgetting"}


def run_hparams(cfg) -> dict:
    """The keys worth filtering runs by, plus the options of the plugins in use."""
    s, t = cfg.strategy, cfg.train
    values = {
        "strategy": s.name,
        "plugins": "+".join(s.plugins) or "none",
        "model": cfg.model.name,
        "backbone": cfg.model.backbone,
        "pretrained": str(cfg.model.pretrained),
        "dataset": cfg.data.dataset,
        "protocol": cfg.scenario.protocol,
        "split": f"B{cfg.scenario.base}-C{cfg.scenario.increment}",
        "labels": cfg.scenario.labels,
        "image_size": cfg.data.image_size,
        "geometry": cfg.data.geometry,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "optimizer": t.optimizer,
        "scheduler": t.scheduler,
        "loss": t.loss,
        "online": t.online,
        "seed": cfg.seed,
    }
    declarations = [STRATEGIES.get(s.name), *(PLUGINS.get(p) for p in s.plugins)]
    for declaration in declarations:  # each one's declared section (the replay buffers share `strategy.replay`)
        if declaration.options is None:  # one without options has no section
            continue
        section = section_of(declaration)
        _flatten(values, section, getattr(s, section, None))
    _flatten(values, "model.options", cfg.model.options)
    return values


def _flatten(values: dict, prefix: str, options) -> None:
    """OPTIONS (a dataclass or a mapping, nested ones too) as `prefix.key` entries; values that
    HParams cannot hold (lists like pod.stages, None) as their text."""
    if dataclasses.is_dataclass(options):
        options = dataclasses.asdict(options)
    for key, value in (options or {}).items():
        if isinstance(value, dict):
            _flatten(values, f"{prefix}.{key}", value)
        else:
            values[f"{prefix}.{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)


def log_hparams(writer, cfg) -> None:
    experiment, session_start, _ = hparams(run_hparams(cfg), {tag: 0.0 for tag in METRICS.values()})
    writer.file_writer.add_summary(experiment)
    writer.file_writer.add_summary(session_start)
    writer.flush()


def summary_scalars(summary: dict) -> dict[str, float]:
    """The run's summary so far under its TensorBoard tags (forgetting absent after one step)."""
    return {tag: summary[key] for key, tag in METRICS.items() if summary[key] is not None}
