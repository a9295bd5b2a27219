"""The run directory's safety: one run at a time, signals that stop a run cleanly, and writes that
either complete or leave the previous file in place.

- Lock: `run.lock` in the run directory, held with `flock` on an open descriptor. The kernel drops
  it when the process ends in any way (kill -9 included), so a lock is never stale; the file holds
  the holder's pid and host for the message a second run gets. It is released and removed when the
  run ends. `flock` is not reliable on some network file systems (old NFS): there, do not start
  two runs on one directory.
- Signals: SIGINT and SIGTERM raise `Interrupted` (a KeyboardInterrupt) at the next Python
  instruction, so the batch in progress is abandoned and completed steps, which are on disk, stay;
  inside `deferred_signals()` (the checkpoint and results writes) they wait until the block ends.
- Writes: to `NAME.tmp`, flushed to disk, then renamed over NAME. A failed write removes the
  temporary file and reports the path and the reason in one line (exit 2); NAME is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Callable, IO

from cml.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): runs are not locked there
    fcntl = None

LOCK_FILE = "run.lock"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run stops; exit code 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def os_error_text(err: OSError) -> str:
    """'No space left on device [ENOSPC]': the errno's text and its name."""
    name = errno.errorcode.get(err.errno or 0)
    text = err.strerror or str(err)
    return f"{text} [{name}]" if name else text


def storage_error(path: Path | str, err: OSError, what: str = "cannot write") -> UserError:
    return UserError(f"{path}: {what} ({os_error_text(err)})")


class RunLock:
    """Exclusive lock of a run directory by this process (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        if fcntl is None:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise storage_error(self.path, err, "cannot create the lock file") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise storage_error(self.path, err, "cannot lock") from None
                who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "a process starting up"
                raise UserError(f"--out: {run_dir} is in use by another cml run ({who}); wait for it "
                                f"to end, or choose another directory") from None
            try:  # the previous holder may have removed the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        # explicit unlock: DataLoader workers forked from us share the descriptor
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """`write(file)` into PATH.tmp, flush it to disk, rename it over PATH; on failure remove the
    temporary file and raise a one-line UserError naming PATH and the os_error_text."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = err if isinstance(err, OSError) else \
            err.__context__ if isinstance(err, RuntimeError) else None  # torch.save wraps write errors
        if isinstance(cause, OSError):
            raise storage_error(path, cause) from None
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
