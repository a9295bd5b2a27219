"""The data: replay buffers hold rows of the training split and the heads' outputs are classes by
position, so a checkpoint is only valid for the data it was made with. `data_identity` keeps the
class order and one 64-bit hash per row of each split (its id, path and labels); `--resume`
compares them with this run's data and refuses, naming the first renamed or reordered class, or
how many rows differ and one of them (an image that became unreadable is left out and shifts
every later row). A checkpoint without it (made by an older cml) is accepted with a warning.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _row_hashes(split) -> torch.Tensor:
    """(N,) int64: a hash of each row's id, path and labels, in row order."""
    labels = np.ascontiguousarray(split.labels)
    return torch.tensor(
        [
            int.from_bytes(
                hashlib.blake2b(f"{i}\0{p}\0".encode() + labels[r].tobytes(), digest_size=8).digest(),
                "little",
                signed=True,
            )
            for r, (i, p) in enumerate(zip(split.ids, split.paths))
        ],
        dtype=torch.int64,
    )


def data_identity(data) -> dict:
    """What the checkpoint's state refers to: the class order (head outputs by position) and every
    row of both splits (buffers index training rows; results are per test row)."""
    return {"classes": list(data.class_names), "train": _row_hashes(data.train), "test": _row_hashes(data.test)}


def content_digest(data) -> str:
    """The data's content for `cml compare`: class names, image ids and labels of both splits, not
    where the files are (the same dataset under two roots is one dataset)."""
    digest = hashlib.sha256("\n".join(data.class_names).encode())
    for split in (data.train, data.test):
        digest.update(b"\0" + "\n".join(map(str, split.ids)).encode())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
    return digest.hexdigest()[:16]


def _rows_problem(part: str, saved: torch.Tensor, now: torch.Tensor, split) -> str | None:
    if torch.equal(saved, now):
        return None
    common = min(len(saved), len(now))
    moved = torch.nonzero(saved[:common] != now[:common]).flatten()
    differ = len(moved) + abs(len(saved) - len(now))
    first = int(moved[0]) if len(moved) else common
    example = (
        f"row {first} is {split.paths[first]} (id {split.ids[first]}) now, another image or other labels "
        "in the checkpoint"
        if first < len(now)
        else f"rows from {first} on are gone"
    )
    gone = int((~torch.isin(saved, now)).sum())
    missing = (
        f"; {gone} of its images or their labels are no longer in the data (unreadable now, removed or relabelled?)"
        if gone
        else ""
    )
    return (
        f"the {part} images differ from those it was made with: {differ} of {len(saved)} rows differ "
        f"({example}){missing}"
    )


def data_problem(saved: dict, data) -> str | None:
    """How this run's data differ from those a checkpoint was made with, or None."""
    old, new = saved["classes"], list(data.class_names)
    if old != new:
        if len(old) != len(new):
            return f"the data have {len(new)} classes, the checkpoint {len(old)}: another dataset?"
        i = next(k for k, (a, b) in enumerate(zip(old, new)) if a != b)
        return f"class {i} is {new[i]!r} now but {old[i]!r} in the checkpoint (renamed or reordered)"
    for part, split in (("training", data.train), ("test", data.test)):
        problem = _rows_problem(part, saved["train" if part == "training" else "test"], _row_hashes(split), split)
        if problem:
            return problem
    return None
