import numpy as np
import pytest
import torch

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.scenarios.cache import cached_pixels
from cml.scenarios.images import MultiLabelImages, read_image


def tiny(tmp_path, *extra):
    cfg = load_config(
        None,
        [
            f"data.root={tmp_path}",
            "data.synthetic.train_images=40",
            "data.synthetic.test_images=20",
            "data.synthetic.image_size=32",
            "data.image_size=24",
            f"data.cache_dir={tmp_path / 'cache'}",
            *extra,
        ],
    ).data
    return cfg, DATASETS.get("synthetic").build(cfg)


def test_cache_matches_decoding_and_is_reused(tmp_path):
    cfg, data = tiny(tmp_path)
    train, test = cached_pixels(data, cfg)
    assert train.shape == (40, 24, 24, 3) and test.shape == (20, 24, 24, 3) and train.dtype == np.uint8
    assert not train.flags.writeable
    for pixels, split in ((train, data.train), (test, data.test)):
        for i, path in enumerate(split.paths):
            assert np.array_equal(pixels[i], read_image(path, 24)), path
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 2  # one per split, no temporary file left
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = cached_pixels(data, cfg)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert sorted((tmp_path / "cache").glob("*.npy")) == files
    assert np.array_equal(again[0], train)

    other_cfg, _ = tiny(tmp_path, "data.image_size=16")
    other = cached_pixels(data, other_cfg)
    assert other[0].shape == (40, 16, 16, 3)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4


def test_workers_build_the_same_file(tmp_path):
    cfg, data = tiny(tmp_path)
    train, _ = cached_pixels(data, cfg)
    cfg_pool, _ = tiny(tmp_path, f"data.cache_dir={tmp_path / 'pool'}", "data.num_workers=2")
    assert np.array_equal(cached_pixels(data, cfg_pool)[0], train)


def test_unwritable_cache_dir(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    cfg, data = tiny(tmp_path, f"data.cache_dir={tmp_path / 'afile' / 'sub'}")
    with pytest.raises(UserError, match="data.cache_dir"):
        cached_pixels(data, cfg)


def test_dataset_reads_the_same_tensor_from_the_cache(tmp_path):
    cfg, data = tiny(tmp_path)
    train, _ = cached_pixels(data, cfg)
    rows = np.array([3, 0, 17])
    paths = [data.train.paths[i] for i in rows]
    plain = MultiLabelImages(paths, data.train.labels[rows], 24, rows=rows)
    cached = MultiLabelImages(paths, data.train.labels[rows], 24, pixels=train, rows=rows)
    for i in range(len(rows)):
        (x, y, row), (cx, cy, crow) = plain[i], cached[i]
        assert torch.equal(x, cx) and torch.equal(y, cy) and int(row) == int(crow) == rows[i]


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_a_damaged_cache_file_is_named_and_rebuilt(tmp_path, damage):
    """A cut-short or empty .npy failed every later run (`mmap length`, `EOFError`)."""
    cfg, data = tiny(tmp_path)
    train, _ = cached_pixels(data, cfg)
    expected = np.array(train)
    del train
    target = next(f for f in (tmp_path / "cache").glob("*.npy") if "-40-" in f.name)
    body = target.read_bytes()
    target.write_bytes(body[: len(body) // 2] if damage == "truncated" else b"")
    with pytest.warns(UserWarning, match=f"{target.name}: the image cache file is damaged"):
        again, _ = cached_pixels(data, cfg)
    assert np.array_equal(again, expected)


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_a_damaged_parsed_labels_cache_is_named_and_parsed_again(tmp_path, damage):
    """A cut-short or empty parsed-labels .npz failed every later run and plan (`BadZipFile`)."""
    cfg, data = tiny(tmp_path)
    files = sorted((tmp_path / "cache").glob("*.npz"))
    assert files
    for f in files:
        body = f.read_bytes()
        f.write_bytes(body[:50] if damage == "truncated" else b"")
    with pytest.warns(UserWarning, match="the parsed-labels cache file is damaged"):
        again = DATASETS.get("synthetic").build(cfg)
    assert np.array_equal(again.train.labels, data.train.labels)
    assert all(f.stat().st_size > 50 for f in files)  # rebuilt


def test_an_image_edited_in_place_is_not_served_stale(tmp_path):
    """The key held only paths and sizes: an image rewritten under its own path kept its old pixels."""
    import os

    from PIL import Image

    cfg, data = tiny(tmp_path)
    train, _ = cached_pixels(data, cfg)
    path = data.train.paths[5]
    before = np.array(train[5])
    del train
    stat = os.stat(path)
    Image.new("RGB", (32, 32), (255 - int(before[0, 0, 0]), 7, 200)).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again, _ = cached_pixels(data, cfg)
    assert np.array_equal(again[5], read_image(path, 24))
    assert not np.array_equal(again[5], before)
