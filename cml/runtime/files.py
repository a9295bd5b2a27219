"""Writes that either complete or leave the previous file in place: to `NAME.tmp`, flushed to
disk, then renamed over NAME. A failed write removes the temporary file and reports the path and
the reason in one line (exit 2); NAME is untouched."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from cml.core.errors import UserError

# a run directory's weights files, named here (torch-free) for the commands that check before torch
CHECKPOINT_FILE = "checkpoint.pt"  # what --resume needs (cml.runtime.checkpoint)
MODEL_FILE = "model.pt"  # the last step's model (cml.runtime.export)


def model_step_file(step: int) -> str:
    """Step STEP's model with `log.save_models: every`."""
    return f"model_step{step}.pt"


def os_error_text(err: OSError) -> str:
    """'No space left on device [ENOSPC]': the errno's text and its name."""
    name = errno.errorcode.get(err.errno or 0)
    text = err.strerror or str(err)
    return f"{text} [{name}]" if name else text


def storage_error(path: Path | str, err: OSError, what: str = "cannot write") -> UserError:
    return UserError(f"{path}: {what} ({os_error_text(err)})")


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
        cause = (
            err if isinstance(err, OSError) else err.__context__ if isinstance(err, RuntimeError) else None
        )  # torch.save wraps write errors
        if isinstance(cause, OSError):
            raise storage_error(path, cause) from None
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def weights_identity(pretrained) -> str | bool:
    """What `model.pretrained` names, by content: "sha256:<first 16 hex>" of a file (two files at
    one path are two starting points, one file at two paths is one), else the value itself
    (False: from scratch, True: timm's weights). `compare` groups runs by it."""
    if not isinstance(pretrained, str):
        return pretrained
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(pretrained, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise storage_error(pretrained, err, "cannot read") from None
    return "sha256:" + digest.hexdigest()[:16]
