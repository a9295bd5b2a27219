"""The loggers and extra Avalanche metrics a config asks for (`log.loggers`, `log.metrics`), and
cml's CSV logger.

Avalanche's CSVLogger writes accuracy and loss columns only, so a cml run gets rows of zeros;
cml's writes its own values under the names of results.json. Every logger sees cml's values with
the last trained step as x and Avalanche's with its iteration count (`metric_plugin.py`), so no x
goes back. docs/metrics.md lists the files and names.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import torch
from avalanche.evaluation.metrics import gpu_usage_metrics, ram_usage_metrics, timing_metrics
from avalanche.logging import BaseLogger, InteractiveLogger, TensorboardLogger

from cml.evaluation.hparams import summary_scalars
from cml.evaluation.metric_plugin import SCALARS, MultiLabelMetrics, scalars
from cml.runtime.files import write_text_atomic

SAMPLE_S = 0.5  # ram and gpu: Avalanche's sampling thread reads the peak this often


def build_loggers(cfg, run_dir: Path, main: bool) -> list[BaseLogger]:
    """The loggers of `log.loggers`, in their order; none but on rank 0 (torchrun)."""
    if not main:
        return []
    run_dir = Path(run_dir)

    def wandb():
        from cml.config import to_dict
        from cml.evaluation.wandb_logger import WandBLogger

        return WandBLogger(run_dir, cfg.log.wandb, to_dict(cfg))

    made = {
        "tensorboard": lambda: TensorboardLogger(run_dir / "tb"),
        "csv": lambda: CSVLogger(run_dir / "csv"),
        "wandb": wandb,
        "interactive": InteractiveLogger,
    }
    return [made[name]() for name in cfg.log.loggers]


def build_metrics(cfg, device: torch.device) -> list:
    """The Avalanche metrics of `log.metrics`: per training epoch and per evaluated experience.
    gpu on a run that is not on CUDA is left out with a warning (the same config runs anywhere)."""
    metrics = []
    for name in cfg.log.metrics:
        if name == "timing":
            metrics += timing_metrics(epoch=True, experience=True)
        elif name == "ram":
            metrics += ram_usage_metrics(every=SAMPLE_S, epoch=True, stream=True)
        elif device.type != "cuda":
            warnings.warn(f"log.metrics: gpu left out: the run is on {device.type}, not on a CUDA device", stacklevel=2)
        else:
            metrics += gpu_usage_metrics(smi_index(device), every=SAMPLE_S, epoch=True, stream=True)
    return metrics


def smi_index(device: torch.device) -> int:
    """The nvidia-smi index (what GPUtil reads) of a CUDA device, matched by UUID: CUDA's numbering
    follows CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, nvidia-smi's does not."""
    import GPUtil

    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
    found = [i for i, gpu in enumerate(GPUtil.getGPUs()) if uuid and gpu.uuid.endswith(uuid)]
    return found[0] if found else index


def log_summary(loggers, summary: dict, step: int) -> None:
    """The summary after step STEP (avg and last mAP, forgetting) to every logger that keeps one,
    so runs compare side by side in each: TensorBoard's `summary/*`, csv's summary.csv, W&B's."""
    values = summary_scalars(summary)
    for logger in loggers:
        if isinstance(logger, TensorboardLogger):
            for tag, value in values.items():
                logger.writer.add_scalar(tag, value, step)
            logger.writer.flush()
        elif hasattr(logger, "log_summary"):
            logger.log_summary(values, step)


def close_loggers(loggers) -> None:
    """Flush TensorBoard, end a W&B run (its files are complete only then)."""
    for logger in loggers:
        if isinstance(logger, TensorboardLogger):
            logger.writer.flush()
        elif hasattr(logger, "close"):
            logger.close()


class CSVLogger(BaseLogger):
    """cml's values of every scored test experience into FOLDER/eval.csv (`step`: the last trained
    step, `experience`, results.json's step-record names, `map_step<j>`), the summary after each
    step into FOLDER/summary.csv, Avalanche's scalars into FOLDER/avalanche.csv (`metric`, `x`,
    `value`). Rows are appended as they come, so a resumed run
    continues the files; a row for a key already there (the step an interruption left half done,
    evaluated again) replaces it."""

    def __init__(self, folder: str | Path):
        super().__init__()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.others = KeyedCSV(self.folder / "avalanche.csv", ["metric", "x", "value"])
        self.eval: KeyedCSV | None = None  # its columns follow the number of steps
        self.summary: KeyedCSV | None = None

    def log_metrics(self, metric_values) -> None:
        rows = [
            [name, mv.x_plot, value]
            for mv in metric_values
            if not isinstance(mv.origin, MultiLabelMetrics)
            for name, value in scalars(mv)
        ]
        self.others.write(rows)

    def log_summary(self, values: dict[str, float], step: int) -> None:
        """FOLDER/summary.csv: `step`, `metric` (TensorBoard's tag), `value`, a row per value."""
        if self.summary is None:
            self.summary = KeyedCSV(self.folder / "summary.csv", ["step", "metric", "value"])
        self.summary.write([[step, tag, value] for tag, value in values.items()])

    def after_eval_exp(self, strategy, metric_values, **kwargs) -> None:
        origins = {id(mv.origin): mv.origin for mv in metric_values if isinstance(mv.origin, MultiLabelMetrics)}
        for metric in origins.values():  # one that published values this experience: it scored it
            x, values = metric.scored
            n_steps = len(metric.step_classes)
            if self.eval is None:
                columns = ["step", "experience", *SCALARS, *(f"map_step{j}" for j in range(n_steps))]
                self.eval = KeyedCSV(self.folder / "eval.csv", columns)
            step_map = values["step_map"] + [None] * (n_steps - len(values["step_map"]))
            self.eval.write([[x, values["step"], *(values[k] for k in SCALARS), *step_map]])


class KeyedCSV:
    """A CSV file whose rows are keyed by their first two cells; `write` appends, replacing the
    rows of keys already in the file."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns
        self.keys: set[tuple[str, str]] = set()
        if path.exists():
            with path.open(newline="") as f:
                self.keys = {tuple(row[:2]) for row in list(csv.reader(f))[1:]}

    def write(self, rows: list[list]) -> None:
        if not rows:
            return
        rows = [[_cell(v) for v in row] for row in rows]
        new = {tuple(row[:2]) for row in rows}
        if new & self.keys:  # rewritten without them, then appended
            with self.path.open(newline="") as f:
                kept = [row for row in list(csv.reader(f))[1:] if tuple(row[:2]) not in new]
            write_text_atomic(self.path, _table([self.columns, *kept]))
        fresh = not self.path.exists()
        with self.path.open("a", newline="") as f:
            f.write(_table([self.columns, *rows] if fresh else rows))
        self.keys |= new


def _cell(v) -> str:
    """Numbers at full precision (repr), an undefined value (NaN, None) as an empty cell."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v)) if isinstance(v, float) else str(v)


def _table(rows) -> str:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue()
