"""NUS-WIDE loader on a tiny copy of the official layout, with expected values written by hand."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests_helpers import data_config

from cml.core.errors import UserError
from cml.core.registry import DATASETS

CONCEPTS = ["water", "animal", "sky"]  # deliberately not alphabetical: the file's order is kept
TRAIN = [  # (list line, labels for water/animal/sky, image file written?)
    ("actor\\0001_1.jpg", (1, 0, 1), True),
    ("beach\\0002_2.jpg", (0, 0, 0), True),  # unlabeled
    ("beach\\0003_3.jpg", (0, 1, 0), False),  # missing file
    ("cat/0004_4.jpg", (0, 1, 1), True),
    ("dog\\0005_5.jpg", (0, 0, 0), False),  # unlabeled and missing: counted as unlabeled
]
TEST = [
    ("sky\\0006_6.jpg", (1, 1, 1), True),
    ("sky\\0007_7.jpg", (0, 0, 1), True),
    ("sky\\0008_8.jpg", (1, 0, 0), False),  # missing file
]


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, "JPEG")


def make(root: Path, concepts_file="Concepts81.txt", labels_dir="TrainTestLabels", images=None) -> Path:
    images = images or root / "images"
    (root / concepts_file).parent.mkdir(parents=True, exist_ok=True)
    (root / concepts_file).write_text("\n".join(CONCEPTS) + "\n")
    (root / "ImageList").mkdir(parents=True)
    (root / labels_dir).mkdir(parents=True)
    for tag, rows in (("Train", TRAIN), ("Test", TEST)):
        (root / "ImageList" / f"{tag}Imagelist.txt").write_text("".join(f"{p}\r\n" for p, _, _ in rows))
        for j, concept in enumerate(CONCEPTS):
            # "0 \r\n": the real files' trailing blanks and Windows line ends must be tolerated
            (root / labels_dir / f"Labels_{concept}_{tag}.txt").write_text(
                "".join(f"{labels[j]} \r\n" for _, labels, _ in rows)
            )
        for p, _, exists in rows:
            if exists:
                jpeg(images / p.replace("\\", "/"))
    return root


def load(root: Path, images=None):
    return DATASETS.get("nuswide").build(data_config(dataset="nuswide", root=str(root), nuswide={"images": images}))


def test_official_layout(tmp_path):
    data = load(make(tmp_path))
    assert data.name == "nuswide"
    assert data.class_names == ["water", "animal", "sky"]
    assert data.train.ids == [0, 3]  # line numbers in TrainImagelist.txt
    assert data.train.paths == [
        str(tmp_path / "images" / "actor" / "0001_1.jpg"),
        str(tmp_path / "images" / "cat" / "0004_4.jpg"),
    ]
    np.testing.assert_array_equal(data.train.labels, [[1, 0, 1], [0, 1, 1]])
    assert data.train.labels.dtype == np.uint8
    assert data.test.ids == [0, 1]
    np.testing.assert_array_equal(data.test.labels, [[1, 1, 1], [0, 0, 1]])
    assert data.skipped == {"train_unlabeled": 2, "train_missing_files": 1, "test_missing_files": 1}
    assert data.test_ignore is None


def test_unzipped_folders_and_separate_image_folder(tmp_path):
    images = tmp_path / "elsewhere"
    make(tmp_path / "nus", "ConceptsList/Concepts81.txt", "Groundtruth/TrainTestLabels", images)
    data = load(tmp_path / "nus", images=str(images))
    assert data.train.paths[1] == str(images / "cat" / "0004_4.jpg")
    np.testing.assert_array_equal(data.test.labels, [[1, 1, 1], [0, 0, 1]])


def test_label_file_length_differs_from_list(tmp_path):
    make(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_animal_Train.txt").write_text("0\n1\n1\n0\n")
    with pytest.raises(UserError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "Labels_animal_Train.txt" in message
    assert "4 lines" in message and "TrainImagelist.txt has 5" in message


@pytest.mark.parametrize(
    "content, line, value",
    [("1\n1\nyes\n", 3, "yes"), ("1\n2\n0\n", 2, "2"), ("1\n\n0\n", 2, ""), ("1 0\n1\n0\n", 1, "1 0")],
)
def test_label_line_not_binary(tmp_path, content, line, value):
    make(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_sky_Test.txt").write_text(content)
    with pytest.raises(UserError, match=rf"Labels_sky_Test\.txt: line {line}: '{value}'; expected 0 or 1"):
        load(tmp_path)


def test_absent_dataset_names_file_and_source(tmp_path):
    with pytest.raises(UserError) as err:
        load(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "Concepts81.txt") in message
    assert "NUS lab's website" in message and "downloaded separately" in message


def test_missing_label_file_named(tmp_path):
    make(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_water_Test.txt").unlink()
    with pytest.raises(UserError, match="Labels_water_Test.txt not found"):
        load(tmp_path)


def test_missing_image_folder(tmp_path):
    make(tmp_path, images=tmp_path / "pics")
    with pytest.raises(UserError, match="data.nuswide.images: .*images not found"):
        load(tmp_path)
