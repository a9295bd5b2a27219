"""`data.geometry: keep_aspect`, MULTI-LANE's build_transform (tdemin16/multi-lane datasets.py):
training crops from the original image, test images resized on the shorter side (bicubic) and
centre-cropped. References: torchvision's own Resize + CenterCrop on PIL images (what their code
runs), PIL's plain decode, and crop bounds worked out by hand."""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tests_helpers import data_config, run_cli, tiny
from torchvision import transforms as T

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.scenarios.augment import Augment
from cml.scenarios.cache import Originals, cached_pixels
from cml.scenarios.geometry import Geometry, centre_view, default_test_resize
from cml.scenarios.images import MultiLabelImages

REPO = Path(__file__).resolve().parents[2]
SIZES = [(40, 24), (24, 40), (33, 33), (50, 20), (20, 50), (31, 17)]  # (width, height) of the training images


def their_test_view(path, size, resize) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    view = T.Compose([T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)])
    return np.asarray(view(image))


def augment(crop_scale, hflip=False):
    cfg = SimpleNamespace(crop_scale=crop_scale, hflip=hflip, cutout=0.0, randaugment=False)
    return Augment(cfg, 16)


def write_list_dataset(root: Path) -> None:
    """Two classes; six training images of the SIZES, three test images, random pixels."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\n")
    rows = ["path,labels"]
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "img" / f"t{i}.png")
        rows.append(f"img/t{i}.png,{'a' if i % 2 else 'a|b'}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    lines = []
    for i, (w, h) in enumerate([(45, 30), (18, 26), (64, 48)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "img" / f"e{i}.jpg", quality=90)
        lines.append(json.dumps({"path": f"img/e{i}.jpg", "labels": ["b"]}))
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")


def list_data(tmp_path, **data):
    write_list_dataset(tmp_path / "d")
    names = {"classes": "classes.txt", "train": "train.csv", "test": "test.jsonl"}
    files = {key: str(tmp_path / "d" / name) for key, name in names.items()}
    cfg = data_config(dataset="list", list=files, image_size=16, geometry="keep_aspect", **data)
    cfg.cache_dir = str(tmp_path / "cache")
    return cfg, DATASETS.get("list").build(cfg)


def test_the_default_shorter_side_is_theirs():
    assert default_test_resize(224) == 256  # int(256 / 224 * 224)
    assert default_test_resize(24) == 27 and default_test_resize(32) == 36 and default_test_resize(384) == 438


@pytest.mark.parametrize("width, height", [(96, 32), (33, 70), (640, 480), (500, 375), (300, 301), (225, 400)])
@pytest.mark.parametrize("size, resize", [(224, 256), (24, 27), (31, 40)])
def test_the_test_view_is_torchvisions_resize_and_centre_crop(tmp_path, width, height, size, resize):
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    expected = their_test_view(tmp_path / "x.png", size, resize)
    assert np.array_equal(centre_view(Image.fromarray(pixels), size, resize), expected)
    assert np.array_equal(Geometry("keep_aspect", size, resize).read(str(tmp_path / "x.png"), "test"), expected)


def test_the_training_crop_comes_from_the_original(tmp_path):
    """A 96 x 32 image whose red channel is twice the column. At scale 1 no crop of aspect 3/4 to
    4/3 fits, so torchvision's RandomResizedCrop falls back to the centre 43 x 32 (round(32 x 4/3)
    wide, from column (96 - 43) // 2 = 26): red 52 to 136. Squashed first, the crop is the whole
    square: red 0 to 190."""
    pixels = np.zeros((32, 96, 3), dtype=np.uint8)
    pixels[..., 0] = 2 * np.arange(96)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    paths, targets = [str(tmp_path / "wide.png")], np.ones((1, 1))
    kept = MultiLabelImages(paths, targets, Geometry("keep_aspect", 16, 18), augment(1.0))[0][0][0]
    assert kept.shape == (16, 16) and kept.min() >= 52 and kept.max() <= 136 and kept.max() - kept.min() > 70
    squashed = MultiLabelImages(paths, targets, 16, augment(1.0))[0][0][0]
    assert squashed.min() <= 10 and squashed.max() >= 180


def test_test_items_and_uncropped_training_items_are_the_test_view(tmp_path):
    cfg, data = list_data(tmp_path)
    geometry = Geometry.of(cfg)
    assert geometry.test_resize == 18  # int(256 / 224 * 16)
    for split, paths in (("test", data.test.paths), ("train", data.train.paths)):
        for aug in (None, augment(None)):  # no augmentation; an augmentation without a crop
            images = MultiLabelImages(paths, np.zeros((len(paths), 2)), geometry, aug, split=split)
            for i, path in enumerate(paths):
                x = images[i][0].permute(1, 2, 0).numpy()
                assert np.array_equal(x, their_test_view(path, 16, 18)), (split, path)


def test_the_keep_aspect_cache_holds_originals_and_test_views(tmp_path):
    cfg, data = list_data(tmp_path)
    train, test = cached_pixels(data, cfg)
    assert isinstance(train, Originals) and len(train) == len(SIZES)
    for i, (path, (w, h)) in enumerate(zip(data.train.paths, SIZES)):
        assert np.array_equal(train[i], np.asarray(Image.open(path).convert("RGB"))) and train[i].shape == (h, w, 3)
    assert test.shape == (3, 16, 16, 3)
    for i, path in enumerate(data.test.paths):
        assert np.array_equal(test[i], their_test_view(path, 16, 18))
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 3  # originals, their index, the test views; no temporary file left
    stamps = [f.stat().st_mtime_ns for f in files]
    cached_pixels(data, cfg)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused
    _, other = cached_pixels(data, dataclasses.replace(cfg, test_resize=20))
    assert other.shape == (3, 16, 16, 3) and len(list((tmp_path / "cache").glob("*.npy"))) == 4  # a new view only


def test_a_damaged_originals_file_is_named_and_rebuilt(tmp_path):
    cfg, data = list_data(tmp_path)
    train, _ = cached_pixels(data, cfg)
    expected = [np.array(train[i]) for i in range(len(train))]
    (flat,) = [f for f in (tmp_path / "cache").glob("originals-*.npy") if "index" not in f.name]
    flat.write_bytes(flat.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="damaged"):
        again, _ = cached_pixels(data, cfg)
    assert all(np.array_equal(again[i], expected[i]) for i in range(len(expected)))


def test_cached_items_equal_decoded_items_under_augmentation(tmp_path):
    cfg, data = list_data(tmp_path)
    train, _ = cached_pixels(data, cfg)
    rows = np.array([4, 0, 2])
    paths = [data.train.paths[i] for i in rows]
    batches = []
    for source in (None, train):  # decoded from the files, read from the cache
        torch.manual_seed(3)
        items = MultiLabelImages(paths, np.zeros((3, 2)), Geometry.of(cfg), augment(0.1, hflip=True), source, rows)
        batches.append(torch.stack([items[i][0] for i in range(3)]))
    assert batches[0].shape == (3, 3, 16, 16) and torch.equal(batches[0], batches[1])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.geometry=keep_aspect", "train.augment_on_device=true"], "train.augment_on_device: data.geometry"),
        (["data.geometry=keep_aspect", "data.image_size=32", "data.test_resize=24"], "data.test_resize: 24 is smaller"),
        (["data.test_resize=256"], "data.test_resize: used only with data.geometry: keep_aspect"),
        (["data.geometry=keep_aspect", "data.jpeg_draft=true"], "data.jpeg_draft: data.geometry keep_aspect"),
    ],
)
def test_contradictory_geometry_settings_are_one_line(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("name", ["coco_b0_c10", "coco_b40_c10", "voc_b0_c4", "voc_b10_c2"])
def test_the_multilane_configs_take_their_geometry(name):
    cfg = load_config(REPO / "configs" / f"{name}_multilane.yaml")
    assert Geometry.of(cfg.data) == Geometry("keep_aspect", 224, 256) and cfg.train.crop_scale == 0.05
    assert load_config(REPO / "configs" / f"{name}.yaml").data.geometry == "squash"  # KRT's own


def test_a_keep_aspect_run_from_the_cache_equals_one_from_the_files(tmp_path):
    overrides = tiny() + [f"data.root={tmp_path / 'data'}", "data.geometry=keep_aspect", "train.crop_scale=0.3"]
    overrides += ["data.jpeg_draft=false"]  # the demo's draft decoding is for the squash
    overrides += ["data.image_size=24", "scenario.increment=4"]  # 32 px originals, 24 px crops; 2 steps
    results = []
    for name, cache in (("files", "false"), ("cache", "true")):
        assert run_cli(REPO / "configs" / "demo.yaml", tmp_path / name, overrides + [f"data.cache={cache}"]) == 0
        results.append(json.loads((tmp_path / name / "results.json").read_text())["steps"])
    assert [s["map"] for s in results[0]] == [s["map"] for s in results[1]] and len(results[0]) == 2


def smooth_jpeg(path: Path, width: int, height: int) -> None:
    coarse = np.random.default_rng(width).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((width, height), Image.BICUBIC).save(path, quality=90)


@pytest.mark.parametrize("width, height", [(640, 480), (500, 375), (96, 120)])
def test_the_squash_is_krts_resize_of_the_fully_decoded_image(tmp_path, width, height):
    """KRT's, CSC's and PRS's loaders: `Image.open(path).convert("RGB")`, then torchvision's
    `Resize((S, S))`. JPEG draft mode (`data.jpeg_draft`) decodes at 1/2 to 1/8 first wherever the
    result still covers S, here wherever both sides are at least 2 x 64."""
    smooth_jpeg(tmp_path / "x.jpg", width, height)
    theirs = np.asarray(T.Resize((64, 64))(Image.open(tmp_path / "x.jpg").convert("RGB")))
    assert np.array_equal(Geometry("squash", 64).view(str(tmp_path / "x.jpg")), theirs)
    drafted = Geometry("squash", 64, jpeg_draft=True).view(str(tmp_path / "x.jpg"))
    assert np.array_equal(drafted, theirs) == (min(width, height) < 128)


def test_a_run_saved_before_jpeg_draft_existed_decoded_in_draft_mode(tmp_path):
    """Its resume with the full decode is refused, naming the key and both values."""
    from cml.config import to_dict
    from cml.runtime.run_directory import as_it_ran, check_run_directory

    saved = to_dict(load_config(None, ["data.jpeg_draft=true"]))
    del saved["data"]["jpeg_draft"]
    assert as_it_ran(saved)["data"]["jpeg_draft"] is True
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resume = SimpleNamespace(resume=True)
    with pytest.raises(UserError, match=r"data.jpeg_draft \(True in the run, False now\)"):
        check_run_directory(resume, load_config(None), tmp_path / "run")
    check_run_directory(resume, load_config(None, ["data.jpeg_draft=true"]), tmp_path / "run")
