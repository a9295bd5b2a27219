"""A stand-in accelerator for the CPU: the `meta` device as the training device.

A GPU run fails where a CPU tensor meets a device tensor, and it stalls where the host reads a
device tensor (`.item()`, `bool()`, `.cpu()`, data-dependent shapes such as `nonzero`): the host
waits for the GPU. On the CPU neither is visible. Here the training device is `meta` (tensors with
shapes and no data): torch itself refuses a CPU/meta mix exactly as it refuses a CPU/CUDA one (a
0-dim CPU tensor is allowed on both), and `HostReads` stands in for the host side of the device:
every read of a meta tensor's values is recorded with the line of cml (or Avalanche) that made it,
and answered with a placeholder (ones for a copy, 0 for a number, `True` for a truth value, so checks such as
"all finite"
pass) so the run goes on. Metric values of such a run are meaningless; what it checks is the
device placement and the reads.

The reads made while the iterations of a training epoch run are `reads_in_epochs` (see
`EpochWindow`); the budget a test allows is stated there.
"""

from __future__ import annotations

import contextlib
import traceback
from collections import Counter
from pathlib import Path

import torch
from avalanche.core import SupervisedPlugin
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
META = torch.device("meta")
ROOT = Path(__file__).resolve().parents[1]
DATA_DEPENDENT = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten.unique_consecutive.default,
    aten._unique2.default,
    aten.argwhere.default,
}


def _site() -> str:
    """Where the read was made: the innermost frame of cml or Avalanche (and, for Avalanche's,
    the cml line that called it)."""
    named = []
    for frame in reversed(traceback.extract_stack()[:-3]):
        for marker in ("/cml/", "/avalanche/"):
            if marker in frame.filename:
                named.append(
                    (marker, f"{marker.strip('/')}/{frame.filename.split(marker, 1)[1]}:{frame.lineno} {frame.name}")
                )
    if not named:
        return "elsewhere"
    caller = next((where for marker, where in named if marker == "/cml/"), None)
    return named[0][1] if named[0][0] == "/cml/" or caller is None else f"{named[0][1]} (from {caller})"


def _on_meta(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "meta"


def _target(args, kwargs) -> torch.device:
    """The device a `to`/`_to_copy` call copies to (its overloads name it in different places)."""
    device = kwargs.get("device") or next((a for a in args[1:] if isinstance(a, (torch.device, str))), None)
    other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), None)
    return torch.device(device) if device is not None else other.device if other is not None else args[0].device


class HostReads(TorchDispatchMode):
    """Records and answers every host read of a meta tensor."""

    def __init__(self):
        super().__init__()
        self.in_epoch = False
        self.reads: list[tuple[str, str, bool]] = []  # (what, site, during a training epoch)

    def _record(self, what: str) -> None:
        self.reads.append((what, _site(), self.in_epoch))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (aten._local_scalar_dense.default, aten.is_nonzero.default) and _on_meta(args[0]):
            self._record("item")
            return True if args[0].dtype == torch.bool else 0
        if func in DATA_DEPENDENT and _on_meta(args[0]):
            self._record(func.__name__)
            return func(*[a.to("cpu") if _on_meta(a) else a for a in args], **kwargs).to(META)
        if (
            func.overloadpacket in (aten._to_copy, aten.to)
            and _on_meta(args[0])
            and _target(args, kwargs).type != "meta"
        ):
            self._record("copy to host")
            dtype = kwargs.get("dtype") or next((a for a in args[1:] if isinstance(a, torch.dtype)), args[0].dtype)
            return torch.ones(args[0].shape, dtype=dtype, device=_target(args, kwargs))
        if func is aten.copy_.default and _on_meta(args[1]) and not _on_meta(args[0]):
            self._record("copy to host")
            return args[0].fill_(1)
        return func(*args, **kwargs)

    def reads_in_epochs(self) -> Counter:
        return Counter(site for _, site, in_epoch in self.reads if in_epoch)


class EpochWindow(SupervisedPlugin):
    """Marks the iterations of the training epochs for `HostReads`: from the epoch's first
    `before_training_iteration` to its `after_training_epoch`, the template's end-of-epoch checks
    included, other plugins' per-epoch passes (`before_training_epoch`: the pseudo-label
    calibration) and their end-of-epoch hooks not (it is first in the plugin list)."""

    def __init__(self, reads: HostReads):
        super().__init__()
        self.reads = reads
        self.iterations = 0
        self.epochs = 0

    def before_training_iteration(self, strategy, **kwargs):
        self.reads.in_epoch = True

    def after_training_iteration(self, strategy, **kwargs):
        self.iterations += 1

    def after_training_epoch(self, strategy, **kwargs):
        self.reads.in_epoch = False
        self.epochs += 1


@contextlib.contextmanager
def meta_device(monkeypatch):
    """Within: `cml run` trains and evaluates on `meta`; yields (HostReads, EpochWindow)."""
    from cml import experiment as run

    reads = HostReads()
    window = EpochWindow(reads)
    monkeypatch.setattr(run, "pick_device", lambda name: META)
    real_build = run.build_plugins
    monkeypatch.setattr(run, "build_plugins", lambda cfg, scenario: [window, *real_build(cfg, scenario)])
    with reads:
        yield reads, window
