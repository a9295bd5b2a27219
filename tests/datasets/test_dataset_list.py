"""The `list` loader (your own images in CSV / JSONL lists), with expected values written by hand."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests_helpers import data_config

from cml.core.errors import UserError
from cml.core.registry import DATASETS


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (20, 160, 20)).save(path, "JPEG")


def make(folder: Path, images: Path, outside: Path) -> dict:
    """classes dog, cat, bird (columns in that order); a CSV train list and a JSONL test list."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("dog\ncat\n\nbird\n")
    (folder / "train.csv").write_text(
        "path,labels\n"
        "img/a.jpg,cat|dog\n"
        "img/b.jpg,\n"  # unlabeled
        "img/c.jpg,bird\n"  # file missing
        '"img/d,1.jpg",bird|cat\n'
    )
    (folder / "test.jsonl").write_text(
        json.dumps({"path": "img/e.jpg", "labels": ["bird"]})
        + "\n\n"
        + json.dumps({"path": "img/f.jpg", "labels": []})
        + "\n"
        + json.dumps({"path": str(outside), "labels": ["dog"]})
        + "\n"
    )
    for name in ("a.jpg", "b.jpg", "d,1.jpg", "e.jpg", "f.jpg"):
        jpeg(images / "img" / name)
    jpeg(outside)
    return {
        "classes": str(folder / "classes.txt"),
        "train": str(folder / "train.csv"),
        "test": str(folder / "test.jsonl"),
    }


def load(root=None, **files):
    return DATASETS.get("list").build(data_config(dataset="list", root=root and str(root), list=files))


def check(data, images: Path, outside: Path) -> None:
    assert data.name == "list"
    assert data.class_names == ["dog", "cat", "bird"]
    assert data.train.ids == ["img/a.jpg", "img/d,1.jpg"]
    assert data.train.paths == [str(images / "img" / "a.jpg"), str(images / "img" / "d,1.jpg")]
    np.testing.assert_array_equal(data.train.labels, [[1, 1, 0], [0, 1, 1]])
    assert data.test.ids == ["img/e.jpg", str(outside)]
    assert data.test.paths == [str(images / "img" / "e.jpg"), str(outside)]
    np.testing.assert_array_equal(data.test.labels, [[0, 0, 1], [1, 0, 0]])
    assert data.skipped == {"train_unlabeled": 1, "train_missing_files": 1, "test_unlabeled": 1}


def test_paths_relative_to_list_folder(tmp_path):
    files = make(tmp_path / "mine", tmp_path / "mine", tmp_path / "other" / "z.jpg")
    check(load(**files), tmp_path / "mine", tmp_path / "other" / "z.jpg")


def test_paths_relative_to_data_root(tmp_path):
    files = make(tmp_path / "lists", tmp_path / "data", tmp_path / "other" / "z.jpg")
    check(load(tmp_path / "data", **files), tmp_path / "data", tmp_path / "other" / "z.jpg")


def test_unknown_class_names_line_and_closest(tmp_path):
    files = make(tmp_path, tmp_path, tmp_path / "z.jpg")
    Path(files["train"]).write_text("path,labels\nimg/a.jpg,cat\nimg/b.jpg,dgo|cat\n")
    with pytest.raises(UserError, match=r"train\.csv: line 3: unknown class 'dgo'; did you mean 'dog'\?"):
        load(**files)


def test_malformed_jsonl_line(tmp_path):
    files = make(tmp_path, tmp_path, tmp_path / "z.jpg")
    Path(files["test"]).write_text('{"path": "img/e.jpg", "labels": ["bird"]}\n{"path": "img/f.jpg", "labels": [\n')
    with pytest.raises(UserError, match=r"test\.jsonl: line 2: not valid JSON"):
        load(**files)


def test_jsonl_labels_must_be_a_list(tmp_path):
    files = make(tmp_path, tmp_path, tmp_path / "z.jpg")
    Path(files["test"]).write_text('{"path": "img/e.jpg", "labels": "bird"}\n')
    with pytest.raises(UserError, match=r"test\.jsonl: line 1: expected an object"):
        load(**files)


def test_csv_header_and_row_checked(tmp_path):
    files = make(tmp_path, tmp_path, tmp_path / "z.jpg")
    Path(files["train"]).write_text("file,tags\nimg/a.jpg,cat\n")
    with pytest.raises(UserError, match=r"train\.csv: line 1: header 'file,tags'; expected 'path,labels'"):
        load(**files)
    Path(files["train"]).write_text("path,labels\nimg/a.jpg,cat\nimg/b.jpg,cat,dog\n")
    with pytest.raises(UserError, match=r"train\.csv: line 3: "):
        load(**files)


def test_missing_keys_and_files_named(tmp_path):
    files = make(tmp_path, tmp_path, tmp_path / "z.jpg")
    with pytest.raises(UserError, match=r"^data\.list\.test: required"):
        load(classes=files["classes"], train=files["train"])
    with pytest.raises(UserError, match=r"^data\.list\.train: file not found: .*nope\.csv"):
        load(**{**files, "train": str(tmp_path / "nope.csv")})
    with pytest.raises(UserError, match=r"^data\.list\.classes: file not found"):
        load(**{**files, "classes": str(tmp_path / "nope.txt")})


def test_unknown_extension(tmp_path):
    files = make(tmp_path, tmp_path, tmp_path / "z.jpg")
    Path(tmp_path / "train.txt").write_text("img/a.jpg cat\n")
    with pytest.raises(UserError, match=r"^data\.list\.train: .*train\.txt: unknown extension '\.txt'"):
        load(**{**files, "train": str(tmp_path / "train.txt")})
