"""PASCAL VOC 2007 loader on a tiny devkit, with expected values written by hand."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests_helpers import data_config

from cml.core.errors import UserError
from cml.core.registry import DATASETS

CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
# Column numbers used below: bottle 4, car 6, cat 7, chair 8, dog 11, person 14, train 18.
TRAINVAL = {"000005": {"chair": 1, "person": 0}, "000007": {"car": 1}, "000009": {"dog": 1}}
TEST = {"000001": {"dog": 1, "person": 0}, "000002": {"train": 1, "bottle": 0}, "000004": {"cat": 1}}
MISSING = {"000009", "000004"}  # no JPEG written


def make(root: Path) -> Path:
    """ROOT/VOCdevkit/VOC2007 with class files in the devkit's own format ("000005 -1", "000007  1")."""
    devkit = root / "VOCdevkit" / "VOC2007"
    main = devkit / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (devkit / "JPEGImages").mkdir()
    for part, images in (("trainval", TRAINVAL), ("test", TEST)):
        for name in CLASSES:
            (main / f"{name}_{part}.txt").write_text(
                "".join(f"{i} {flags.get(name, -1):2d}\n" for i, flags in images.items())
            )
        for i in images:
            if i not in MISSING:
                Image.new("RGB", (8, 8), (0, 90, 200)).save(devkit / "JPEGImages" / f"{i}.jpg", "JPEG")
    return devkit


def load(root: Path, difficult="negative"):
    return DATASETS.get("voc").build(data_config(dataset="voc", root=str(root), voc={"difficult": difficult}))


def multihot(*columns):
    row = np.zeros(20, dtype=np.uint8)
    row[list(columns)] = 1
    return row


@pytest.mark.parametrize("where", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_layout_found_from_any_level(tmp_path, where):
    devkit = make(tmp_path)
    data = load(tmp_path / where)
    assert data.name == "voc"
    assert data.class_names == CLASSES
    assert data.train.ids == ["000005", "000007"]
    assert data.train.paths == [str(devkit / "JPEGImages" / "000005.jpg"), str(devkit / "JPEGImages" / "000007.jpg")]
    assert data.test.ids == ["000001", "000002"]
    assert data.skipped == {"train_missing_files": 1, "test_missing_files": 1}


def test_difficult_negative(tmp_path):
    data = load(make(tmp_path), "negative")
    np.testing.assert_array_equal(data.train.labels, [multihot(8), multihot(6)])
    np.testing.assert_array_equal(data.test.labels, [multihot(11), multihot(18)])
    assert data.test_ignore is None


def test_difficult_positive(tmp_path):
    data = load(make(tmp_path), "positive")
    np.testing.assert_array_equal(data.train.labels, [multihot(8, 14), multihot(6)])
    np.testing.assert_array_equal(data.test.labels, [multihot(11, 14), multihot(4, 18)])
    assert data.test_ignore is None


def test_difficult_ignore(tmp_path):
    data = load(make(tmp_path), "ignore")
    np.testing.assert_array_equal(data.train.labels, [multihot(8), multihot(6)])
    np.testing.assert_array_equal(data.test.labels, [multihot(11), multihot(18)])
    assert data.test_ignore.dtype == np.uint8
    np.testing.assert_array_equal(data.test_ignore, [multihot(14), multihot(4)])


def test_class_files_must_list_same_images(tmp_path):
    main = make(tmp_path) / "ImageSets" / "Main"
    (main / "cat_trainval.txt").write_text("000005 -1\n000009 -1\n000007 -1\n")
    expected = r"cat_trainval\.txt: line 2: image 000009 where aeroplane_trainval\.txt has image 000007"
    with pytest.raises(UserError, match=expected):
        load(tmp_path)


def test_class_file_shorter(tmp_path):
    main = make(tmp_path) / "ImageSets" / "Main"
    (main / "sofa_test.txt").write_text("000001 -1\n000002 -1\n")
    with pytest.raises(UserError, match=r"sofa_test\.txt: 2 images where aeroplane_test\.txt has 3"):
        load(tmp_path)


def test_bad_flag_reports_line(tmp_path):
    main = make(tmp_path) / "ImageSets" / "Main"
    (main / "dog_test.txt").write_text("000001  1\n000002  2\n000004 -1\n")
    with pytest.raises(UserError, match=r"dog_test\.txt: line 2: '000002  2'"):
        load(tmp_path)


def test_absent_dataset(tmp_path):
    with pytest.raises(UserError) as err:
        load(tmp_path)
    assert "VOCtrainval_06-Nov-2007.tar" in str(err.value) and "VOCtest_06-Nov-2007.tar" in str(err.value)


def test_test_tar_not_extracted(tmp_path):
    main = make(tmp_path) / "ImageSets" / "Main"
    for path in main.glob("*_test.txt"):
        path.unlink()
    with pytest.raises(UserError, match=r"aeroplane_test\.txt not found; .*VOCtest_06-Nov-2007\.tar"):
        load(tmp_path)
