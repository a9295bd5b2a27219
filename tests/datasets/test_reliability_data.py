"""Bad and unusual image files and list files: the check before training, conversion to 8-bit RGB,
the size limit, duplicated list rows, and errors raised in DataLoader workers."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests_helpers import data_config

from cml.commands.cli import _one_line
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.datasets import imagefiles
from cml.datasets._types import MultiLabelData, Split
from cml.datasets.imagefiles import MAX_PIXELS, check_image, check_images, decode_rgb


def png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height 8-bit grayscale pixels, with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def bad_files(folder: Path) -> dict[str, Path]:
    """A good JPEG and the damaged kinds, made here."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = folder / "good.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good, quality=90)
    files = {
        "good": good,
        "zero": folder / "zero.jpg",
        "truncated": folder / "truncated.jpg",
        "corrupt": folder / "corrupt.jpg",
        "bomb": folder / "bomb.png",
    }
    files["zero"].write_bytes(b"")
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) * 2 // 3])
    files["corrupt"].write_bytes(b"GIF89a" + bytes(rng.integers(0, 255, 200, dtype=np.uint8)))
    png_header(files["bomb"], 10_000, 10_000)  # 10^8 pixels: over the limit, a 100-byte file
    return files


def test_check_finds_zero_byte_truncated_corrupt_and_bomb_images(tmp_path):
    files = bad_files(tmp_path)
    assert check_image(str(files["good"])) is None
    assert check_image(str(files["zero"])) == "an empty file"
    assert "image file is truncated" in check_image(str(files["truncated"]))
    assert check_image(str(files["corrupt"])) is not None
    assert check_image(str(files["bomb"])) == (
        f"refused: 10000x10000 pixels is more than the limit of {MAX_PIXELS:,} (a decompression bomb?)"
    )
    with pytest.raises(imagefiles.BadImage, match="10000x10000 pixels"):
        decode_rgb(str(files["bomb"]), 8)


def test_bomb_twice_over_the_limit_refused_by_header(tmp_path):
    png_header(tmp_path / "huge.png", 20_000, 20_000)  # PIL itself refuses this one in open()
    assert check_image(str(tmp_path / "huge.png")).startswith("refused as a possible decompression bomb")


def test_sixteen_bit_and_other_modes_become_8_bit_rgb(tmp_path):
    cases = {  # file -> the RGB value every pixel must have, worked out by hand
        "g16.png": (Image.fromarray(np.full((4, 4), 51400, np.uint16)), (200, 200, 200)),  # 51400 / 257
        "palette.png": (Image.new("P", (4, 4), 1), (200, 100, 50)),
        "gray.png": (Image.new("L", (4, 4), 77), (77, 77, 77)),
        "la.png": (Image.new("LA", (4, 4), (0, 51)), (204, 204, 204)),  # black at alpha 0.2 over white
        "rgba.png": (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),  # transparent: white
        "cmyk.tif": (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
        "one.png": (Image.new("1", (4, 4), 1), (255, 255, 255)),
        "float.tif": (Image.fromarray(np.full((4, 4), 0.2, np.float32)), (51, 51, 51)),
    }
    cases["palette.png"][0].putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    for name, (img, rgb) in cases.items():
        img.save(tmp_path / name)
        assert check_image(str(tmp_path / name)) is None, name
        pixels = decode_rgb(str(tmp_path / name), 2)
        assert pixels.dtype == np.uint8 and pixels.shape == (2, 2, 3)
        assert (pixels == rgb).all(), (name, pixels[0, 0])
    assert Image.open(tmp_path / "g16.png").convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # PIL's clip


def _data(paths_train, paths_test) -> MultiLabelData:
    def split(paths):
        return Split([str(p) for p in paths], np.ones((len(paths), 2), np.uint8), [Path(p).name for p in paths])

    return MultiLabelData(
        "list",
        ["a", "b"],
        split(paths_train),
        split(paths_test),
        {"train_unlabeled": 1},
        np.zeros((len(paths_test), 2), np.uint8),
    )


def test_skip_policy_filters_rows_and_counts(tmp_path, capsys):
    files = bad_files(tmp_path / "img")
    good2 = tmp_path / "img" / "good2.jpg"
    Image.new("RGB", (8, 8)).save(good2)
    data = _data([files["good"], files["zero"], files["truncated"], good2], [files["bomb"], good2])
    cfg = data_config(cache_dir=str(tmp_path / "cache"))
    checked = check_images(data, cfg)
    assert checked.train.paths == [str(files["good"]), str(good2)]
    assert checked.train.ids == ["good.jpg", "good2.jpg"] and len(checked.train.labels) == 2
    assert checked.test.paths == [str(good2)] and checked.test_ignore.shape == (1, 2)
    assert checked.skipped == {"train_unlabeled": 1, "train_bad_images": 2, "test_bad_images": 1}
    out = capsys.readouterr().out
    assert out.startswith("left out 3 unreadable images (data.bad_images: skip): ") and out.count("\n") == 1
    listing = (tmp_path / "cache" / "bad-images.txt").read_text().splitlines()
    expected = sorted(str(files[k]) for k in ("zero", "truncated", "bomb"))
    assert sorted(line.split("\t")[0] for line in listing) == expected


def test_stop_policy_lists_the_files(tmp_path):
    files = bad_files(tmp_path / "img")
    data = _data([files["good"], files["zero"], files["corrupt"]], [files["good"]])
    with pytest.raises(UserError) as info:
        check_images(data, data_config(cache_dir=str(tmp_path / "cache"), bad_images="stop"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("data.bad_images is 'stop' and the dataset has 2 unreadable images: ")
    assert f"{files['zero']} (an empty file)" in message and str(files["corrupt"]) in message
    assert message.endswith("or set data.bad_images=skip to leave them out")


def test_verdicts_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    files = bad_files(tmp_path / "img")
    data = _data([files["good"], files["zero"]], [files["good"]])
    cfg = data_config(cache_dir=str(tmp_path / "cache"))
    calls = []
    real = imagefiles.check_image
    monkeypatch.setattr(imagefiles, "check_image", lambda p: calls.append(p) or real(p))
    assert check_images(data, cfg).skipped["train_bad_images"] == 1
    assert sorted(calls) == sorted([str(files["good"]), str(files["zero"])])
    calls.clear()
    assert check_images(data, cfg).skipped["train_bad_images"] == 1
    assert calls == []  # all from the cache
    Image.new("RGB", (8, 8)).save(files["zero"])  # repaired: new size and mtime
    assert check_images(data, cfg) is data and calls == [str(files["zero"])]


def list_files(folder: Path, train: bytes) -> dict:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (8, 8)).save(folder / "img" / name)
    (folder / "classes.txt").write_text("cat\ndog\nbird\n")
    (folder / "train.csv").write_bytes(train)
    (folder / "test.csv").write_text("path,labels\nimg/b.jpg,bird\n")
    return {k: str(folder / f) for k, f in (("classes", "classes.txt"), ("train", "train.csv"), ("test", "test.csv"))}


def load_list(files: dict):
    return DATASETS.get("list").build(data_config(dataset="list", list=files))


def test_duplicated_list_rows_are_merged_and_counted(tmp_path):
    files = list_files(tmp_path, b"path,labels\nimg/a.jpg,cat\nimg/b.jpg,bird\n./img/a.jpg,dog|cat\nimg/b.jpg,\n")
    data = load_list(files)
    assert data.train.ids == ["img/a.jpg", "img/b.jpg"]
    np.testing.assert_array_equal(data.train.labels, [[1, 1, 0], [0, 0, 1]])  # a: cat + dog
    assert data.skipped == {"train_duplicate_rows": 2}


def test_binary_and_non_utf8_list_files(tmp_path):
    files = list_files(tmp_path, "path,labels\nimg/a.jpg,chat\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"train\.csv: not UTF-8 text \(byte 0xe9 at offset 26\); save it as UTF-8$"):
        load_list(files)
    Path(files["classes"]).write_bytes(b"\x00\x01\x02cat")
    with pytest.raises(UserError, match=r"classes\.txt: a binary file, not text; expected one class name per line"):
        load_list(files)


def test_worker_errors_are_the_same_one_line(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from cml.scenarios.images import MultiLabelImages

    files = bad_files(tmp_path)
    images = MultiLabelImages([str(files["corrupt"])], np.ones((1, 2)), 8)
    with pytest.raises(UserError) as in_process:
        images[0]
    with pytest.raises(UserError) as in_worker:
        next(iter(DataLoader(images, num_workers=1)))
    assert "Traceback" in str(in_worker.value)  # torch's wrapper: what users saw before
    assert _one_line(in_worker.value) == _one_line(in_process.value) == str(in_process.value)
    assert str(in_process.value).startswith(f"{files['corrupt']}: cannot read the image (")
    assert torch.utils.data.get_worker_info() is None
