"""Runs `cml run` one or more times in this process (cml.commands.cli.main, as `python -m cml` does) and
records, per run, what bench/gpu_check.sh measures: wall time, exit code, per epoch its start and
end and the images trained (replayed ones included), and optionally the host syncs per training
iteration.

    python bench/_gpu_run.py RECDIR [--sync] [--no-dynamo] -- NAME run CONFIG --out DIR --set k=v ... \
        [--- NAME2 run CONFIG2 ...]

Per run NAME: RECDIR/NAME.log (its stdout and stderr) and RECDIR/NAME.json (the record, rewritten
after every step, so a run killed by its time limit leaves what it did). Runs share the process,
so only the first pays for the imports; the process's exit code is the worst run's.

- Epoch times come from hooks on cml's ProgressLogger (Avalanche's logger interface: before and
  after each training step, epoch and iteration); on CUDA each timestamp follows a
  `torch.cuda.synchronize()`, so an epoch's time holds its GPU work. Avalanche builds the
  DataLoader iterator inside the epoch, so the first epoch holds the workers' start; the later
  ones (workers persist) are the steady state.
- `--sync` (CUDA only): `torch.cuda.set_sync_debug_mode("warn")` from the start to the end of each
  training step; every "called a synchronizing CUDA operation" warning is counted with the first
  cml (else Avalanche, else any) source line on the stack. Evaluation is not counted. The
  timestamps' own synchronize() runs with the mode off. On the CPU: "n/a".
- `--no-dynamo`: torch._dynamo disabled (torch.compile returns the model to run eagerly), for the
  DRY mode's `train.compile=true`, where an inductor build on 2 CPU cores would take minutes.
- A `train.compile: torch.compile failed` warning (cml's fall-back to eager mode) is recorded.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SYNC_TEXT = "synchronizing CUDA operation"


class Recorder:
    def __init__(self, path: Path, count_syncs: bool):
        self.path, self.count_syncs = path, count_syncs
        self.rec = {"rc": None, "wall_s": None, "cuda": False, "steps": [], "compile_fallback": [], "syncs": None}
        self.sites: collections.Counter = collections.Counter()
        self.training = False
        self.start = time.perf_counter()

    def now(self, cuda: bool) -> float:
        if cuda:
            import torch

            with self.sync_mode(0):
                torch.cuda.synchronize()
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def sync_mode(self, mode):
        import torch

        previous = torch.cuda.get_sync_debug_mode() if self.rec["cuda"] else 0
        if self.rec["cuda"]:
            torch.cuda.set_sync_debug_mode(mode)
        try:
            yield
        finally:
            if self.rec["cuda"]:
                torch.cuda.set_sync_debug_mode(previous)

    # ProgressLogger hooks (called as logger.hook(strategy, metric_values, **kwargs))
    def before_exp(self, strategy):
        self.rec["cuda"] = getattr(strategy, "device", None) is not None and strategy.device.type == "cuda"
        step = getattr(getattr(strategy, "experience", None), "step", len(self.rec["steps"]))
        self.rec["steps"].append(
            {
                "step": step,
                "t_start": self.now(self.rec["cuda"]),
                "iterations": 0,
                "images": 0,
                "epochs": [],
                "t_end": None,
            }
        )
        if self.count_syncs and self.rec["cuda"]:
            import torch

            torch.cuda.set_sync_debug_mode("warn")
        self.training = True

    def before_epoch(self, strategy):
        self.rec["steps"][-1]["epochs"].append({"t_start": self.now(self.rec["cuda"]), "t_end": None, "images": 0})

    def after_iteration(self, strategy):
        step = self.rec["steps"][-1]
        n = len(strategy.mb_y)
        step["iterations"] += 1
        step["images"] += n
        if step["epochs"]:
            step["epochs"][-1]["images"] += n

    def after_epoch(self, strategy):
        if self.rec["steps"][-1]["epochs"]:
            self.rec["steps"][-1]["epochs"][-1]["t_end"] = self.now(self.rec["cuda"])

    def after_exp(self, strategy):
        self.training = False
        if self.count_syncs and self.rec["cuda"]:
            import torch

            torch.cuda.set_sync_debug_mode(0)
        self.rec["steps"][-1]["t_end"] = self.now(self.rec["cuda"])
        self.write()

    def warning(self, message, category, filename, lineno):
        text = str(message)
        if "torch.compile failed" in text:
            self.rec["compile_fallback"].append(text[:300])
        if SYNC_TEXT in text and self.training:
            frames = traceback.extract_stack()[:-2]
            pick = (
                [f for f in frames if "/cml/" in f.filename and "bench/_gpu_run" not in f.filename]
                or [f for f in frames if "/avalanche/" in f.filename]
                or [None]
            )[-1]
            where = (
                f"{filename}:{lineno}" if pick is None else f"{pick.filename.split('site-packages/')[-1]}:{pick.lineno}"
            )
            self.sites[where.replace(str(REPO) + "/", "")] += 1
            return True
        return False

    def write(self):
        iterations = sum(s["iterations"] for s in self.rec["steps"])
        if self.count_syncs and self.rec["cuda"]:
            total = sum(self.sites.values())
            self.rec["syncs"] = {
                "total": total,
                "iterations": iterations,
                "per_iteration": total / iterations if iterations else None,
                "sites": self.sites.most_common(12),
            }
        elif self.count_syncs:
            self.rec["syncs"] = "n/a (not on CUDA)"
        self.path.write_text(json.dumps(self.rec, indent=1) + "\n")


def install_hooks(current: list) -> None:
    from cml.evaluation.progress import ProgressLogger

    def wrap(name, hook):
        original = getattr(ProgressLogger, name)

        def wrapped(self, strategy, *args, **kwargs):
            result = original(self, strategy, *args, **kwargs)
            if current:
                try:
                    getattr(current[0], hook)(strategy)
                except Exception as err:  # the record must never break the run
                    print(f"_gpu_run: {hook} failed: {err!r}", file=sys.stderr)
            return result

        setattr(ProgressLogger, name, wrapped)

    wrap("before_training_exp", "before_exp")
    wrap("before_training_epoch", "before_epoch")
    wrap("after_training_iteration", "after_iteration")
    wrap("after_training_epoch", "after_epoch")
    wrap("after_training_exp", "after_exp")

    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if current and current[0].warning(message, category, filename, lineno):
            return  # a counted sync warning: not printed (thousands)
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    warnings.filterwarnings("always", message=".*" + SYNC_TEXT)
    warnings.filterwarnings("always", message="train.compile")


def split_runs(args: list[str]) -> list[list[str]]:
    runs, current = [], []
    for arg in args:
        if arg == "---":
            runs.append(current)
            current = []
        else:
            current.append(arg)
    return [r for r in runs + [current] if r]


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__)
        return 2
    options, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    recdir = Path(options[0])
    recdir.mkdir(parents=True, exist_ok=True)
    if "--no-dynamo" in options:
        import torch._dynamo

        torch._dynamo.config.disable = True
    from cml.commands.cli import main as cml_main

    current: list = []
    install_hooks(current)
    worst = 0
    for spec in split_runs(rest):
        name, cml_args = spec[0], spec[1:]
        recorder = Recorder(recdir / f"{name}.json", "--sync" in options)
        recorder.rec["argv"] = cml_args
        current[:] = [recorder]
        recorder.write()
        with open(recdir / f"{name}.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print("+ python -m cml " + " ".join(cml_args), flush=True)
            try:
                rc = cml_main(cml_args)
            except SystemExit as stop:
                rc = stop.code if isinstance(stop.code, int) else 1
            except BaseException:
                traceback.print_exc()
                rc = 1
        recorder.rec["rc"], recorder.rec["wall_s"] = rc, time.perf_counter() - recorder.start
        recorder.write()
        current.clear()
        worst = max(worst, rc or 0)
        gc.collect()  # the run's strategy, loaders and their workers
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
