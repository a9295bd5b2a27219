"""Signals that stop a run cleanly: SIGINT and SIGTERM raise `Interrupted` (a KeyboardInterrupt)
at the next Python instruction, so the batch in progress is abandoned and completed steps, which
are on disk, stay; inside `deferred_signals()` (the checkpoint and results writes) they wait until
the block ends."""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run stops; exit code 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Signals:
    deferring = False
    pending: int | None = None
    received: int | None = None  # the last stop signal, for the CLI's message


def received_signal() -> int | None:
    return _Signals.received


def _handler(signum, frame) -> None:
    _Signals.received = signum
    if _Signals.deferring:
        _Signals.pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals_raise():
    """SIGINT and SIGTERM raise `Interrupted` within the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Signals.received = _Signals.pending = None
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def deferred_signals():
    """A stop signal received within the block takes effect when the block has completed."""
    outer = _Signals.deferring
    _Signals.deferring = True
    try:
        yield
    finally:
        _Signals.deferring = outer
    if not outer and _Signals.pending is not None:
        signum, _Signals.pending = _Signals.pending, None
        raise Interrupted(signum)
