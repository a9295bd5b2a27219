"""One run at a time per run directory: `run.lock`, held with `flock` on an open descriptor.

The kernel drops the lock when the process ends in any way (kill -9 included), so a lock is never
stale; the file holds the holder's pid and host for the message a second run gets. It is released
and removed when the run ends. `flock` is not reliable on some network file systems (old NFS):
there, do not start two runs on one directory."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from cml.core.errors import UserError
from cml.runtime.files import storage_error

try:
    import fcntl
except ImportError:  # not POSIX (Windows): runs are not locked there
    fcntl = None

LOCK_FILE = "run.lock"


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
                raise UserError(
                    f"--out: {run_dir} is in use by another cml run ({who}); wait for it "
                    f"to end, or choose another directory"
                ) from None
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

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
