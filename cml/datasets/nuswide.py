"""NUS-WIDE (81 concepts) in the layout of the files from the NUS lab's website.

    ROOT/Concepts81.txt                            one concept per line: the class order
    ROOT/ImageList/TrainImagelist.txt              one image path per line, e.g. actor\\0001_2124494179.jpg
    ROOT/ImageList/TestImagelist.txt
    ROOT/TrainTestLabels/Labels_<concept>_Train.txt  one 0 or 1 per line, aligned with the image list
    ROOT/TrainTestLabels/Labels_<concept>_Test.txt
    IMAGES/<path from the image list>              IMAGES = `data.nuswide.images`, default ROOT/images

The folders as unzipped from the site are accepted too: ROOT/ConceptsList/Concepts81.txt and
ROOT/Groundtruth/TrainTestLabels/. Backslashes in the image lists become `/`. The image id is
the 0-based line number in its image list, as in PRS's published NUS-WIDEseq split files. The images are
downloaded separately and real copies miss many:
an image with no positive concept is skipped first (`<split>_unlabeled`), then a labelled image
whose file is absent (`<split>_missing_files`). A relative `data.nuswide.images` is taken from the
working directory, like every path in the config. In label files, blanks around the 0/1 (and
Windows line ends) and trailing blank lines are tolerated; any other line is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cml.core.errors import UserError
from cml.core.registry import Dataset
from cml.core.schema import option
from cml.datasets._types import MultiLabelData, Split

LAYOUT = (
    "ROOT/Concepts81.txt, ROOT/ImageList/{Train,Test}Imagelist.txt and "
    "ROOT/TrainTestLabels/Labels_<concept>_{Train,Test}.txt, images under ROOT/images "
    "(NUS-WIDE from the NUS lab's website: the image lists, the 81 concept labels "
    "(Groundtruth) and the concept list; the images are downloaded separately)"
)
BLANKS = b" \t\r"
IS_BLANK = np.isin(np.arange(256), list(BLANKS))  # byte -> bool lookup tables
IS_DIGIT = np.isin(np.arange(256), list(b"01"))
NEWLINE = ord("\n")


def find(root: Path, *candidates: str) -> Path:
    """The first of ROOT/candidate that exists; the error names the first (the documented one)."""
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    raise UserError(f"nuswide: {root / candidates[0]} not found; expected {LAYOUT}")


def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"nuswide: {path} not found; expected {LAYOUT}")
    lines = path.read_text(encoding="utf-8").rstrip().splitlines()
    paths = [line.strip().replace("\\", "/") for line in lines]
    if "" in paths:
        raise UserError(f"{path}: line {paths.index('') + 1}: empty line; expected one image path per line")
    return paths


def read_flags(path: Path, list_path: Path, n_images: int) -> np.ndarray:
    """One label file as a bool column: a 0 or 1 per line, blanks around it allowed. Checked on
    the raw bytes (fast at 270k lines): without its blanks, a valid file reads "d\\nd\\n...d"."""
    if not path.is_file():
        raise UserError(f"nuswide: {path} not found; expected {LAYOUT}")
    data = path.read_bytes().rstrip()  # trailing blank lines are not lines
    ink = np.frombuffer(data, dtype=np.uint8)
    ink = ink[~IS_BLANK[ink]]
    digits, separators = ink[0::2], ink[1::2]
    if separators.size != max(digits.size - 1, 0) or (separators != NEWLINE).any() or not IS_DIGIT[digits].all():
        n, bad = next(
            (n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip(BLANKS) not in (b"0", b"1")
        )
        raise UserError(f"{path}: line {n}: {bad.strip().decode(errors='replace')!r}; expected 0 or 1")
    if digits.size != n_images:
        raise UserError(
            f"{path}: {digits.size} lines but {list_path} has {n_images}; expected one 0/1 line per listed image"
        )
    return digits == ord("1")


@dataclass
class NusWideOptions:
    images: Optional[str] = option(
        None, path=True, help="image folder (default ROOT/images); list paths are relative to it"
    )


def load(data_cfg) -> MultiLabelData:
    root = Path(data_cfg.root).expanduser().absolute()
    if not root.is_dir():
        raise UserError(f"data.root: {root} does not exist; expected {LAYOUT}")
    concepts_file = find(root, "Concepts81.txt", "ConceptsList/Concepts81.txt")
    concepts = [c.strip() for c in concepts_file.read_text(encoding="utf-8").splitlines() if c.strip()]
    if not concepts:
        raise UserError(f"{concepts_file}: no concept names; expected one concept per line")
    label_dir = find(root, "TrainTestLabels", "Groundtruth/TrainTestLabels")
    images = Path(data_cfg.nuswide.images or root / "images").expanduser().absolute()
    if not images.is_dir():
        raise UserError(
            f"data.nuswide.images: {images} not found; expected the NUS-WIDE images (downloaded "
            "separately) in the folders of the image lists, e.g. actor/0001_2124494179.jpg"
        )
    prefix = os.path.join(images, "")
    splits, skipped = [], {}
    for part, tag in (("train", "Train"), ("test", "Test")):
        list_path = root / "ImageList" / f"{tag}Imagelist.txt"
        rel = read_list(list_path)
        labels = np.stack(
            [read_flags(label_dir / f"Labels_{c}_{tag}.txt", list_path, len(rel)) for c in concepts], axis=1
        ).astype(np.uint8)
        labelled = np.flatnonzero(labels.any(axis=1))
        files = [prefix + p for p in rel]  # str, not pathlib: 270k images
        rows = [i for i in labelled if os.path.exists(files[i])]
        skipped[f"{part}_unlabeled"] = len(rel) - len(labelled)
        skipped[f"{part}_missing_files"] = len(labelled) - len(rows)
        if labelled.size and not rows:
            raise UserError(
                f"data.nuswide.images: none of the {len(labelled)} labelled images of "
                f"{list_path} is under {images} (first: {files[labelled[0]]})"
            )
        rows = np.array(rows, dtype=np.int64)
        splits.append(Split([files[i] for i in rows], labels[rows], rows.tolist()))
    skipped = {key: count for key, count in skipped.items() if count}
    return MultiLabelData("nuswide", concepts, splits[0], splits[1], skipped)


DECLARATION = Dataset(build=load, options=NusWideOptions, needs_root=True, help="NUS-WIDE, official lists")
