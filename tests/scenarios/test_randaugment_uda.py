"""The UDA-style RandAugment of the `randaugment` package (KRT / CSC / ASL), op by op against the
package's own PIL calls (written out here as in randaugment 1.0.2's `SubPolicy`) or by hand, and
its draws counted over many seeded calls."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from cml.scenarios import randaugment_uda as ra

S = 32
GREY = (128, 128, 128)


def _to_pil(x):
    return Image.fromarray(x.permute(1, 2, 0).numpy())


def _from_pil(img):
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)


def _rotate_with_fill(img, degrees):  # the package's rotate_with_fill
    rot = img.convert("RGBA").rotate(degrees)
    return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)


def _affine(img, coefficients, resample=Image.NEAREST):  # PIL's transform default: nearest
    return img.transform(img.size, Image.AFFINE, coefficients, resample, fillcolor=GREY)


PIL_OPS = {  # the package's `func` table, magnitude already signed
    "ShearX": lambda img, m: _affine(img, (1, m, 0, 0, 1, 0), Image.BICUBIC),
    "ShearY": lambda img, m: _affine(img, (1, 0, 0, m, 1, 0), Image.BICUBIC),
    "TranslateX": lambda img, m: _affine(img, (1, 0, m * img.size[0], 0, 1, 0)),
    "TranslateY": lambda img, m: _affine(img, (1, 0, 0, 0, 1, m * img.size[1])),
    "Rotate": _rotate_with_fill,
    "Color": lambda img, m: ImageEnhance.Color(img).enhance(1 + m),
    "Contrast": lambda img, m: ImageEnhance.Contrast(img).enhance(1 + m),
    "Sharpness": lambda img, m: ImageEnhance.Sharpness(img).enhance(1 + m),
    "Brightness": lambda img, m: ImageEnhance.Brightness(img).enhance(1 + m),
    "Posterize": lambda img, m: ImageOps.posterize(img, int(m)),
    "Solarize": lambda img, m: ImageOps.solarize(img, m),
    "AutoContrast": lambda img, m: ImageOps.autocontrast(img),
    "Equalize": lambda img, m: ImageOps.equalize(img),
    "Invert": lambda img, m: ImageOps.invert(img),
}
# the largest |difference| in levels allowed per operation (the module's docstring says why)
TOLERANCE = {"Color": 1, "Contrast": 1, "Sharpness": 1, "AutoContrast": 1}


def _images():
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(20, 236, (3, S, S), dtype=torch.uint8, generator=g)
    y, x = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    ramp = torch.stack([x * 6 + 10, y * 5 + 20, (x + y) * 3 + 5]).to(torch.uint8)  # linear, no clipping
    return {"noise": noise, "ramp": ramp}


def _signed_values(name):
    signs = (1, -1) if name in ra.SIGNED else (1,)
    return [s * ra.value(name, level) for level in ra.LEVELS for s in signs]


def test_the_table_is_the_packages_linspace_scale():
    """randaugment 1.0.2's `ranges`, indexed by level 1-9."""
    expected = {
        "ShearX": np.linspace(0, 0.3, 10),
        "ShearY": np.linspace(0, 0.3, 10),
        "TranslateX": np.linspace(0, 150 / 331, 10),
        "TranslateY": np.linspace(0, 150 / 331, 10),
        "Rotate": np.linspace(0, 30, 10),
        "Color": np.linspace(0.0, 0.9, 10),
        "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int),
        "Solarize": np.linspace(256, 0, 10),
        "Contrast": np.linspace(0.0, 0.9, 10),
        "Sharpness": np.linspace(0.0, 0.9, 10),
        "Brightness": np.linspace(0.0, 0.9, 10),
        "Cutout": np.round(np.linspace(0, 20, 10), 0).astype(int),
    }
    assert sorted(ra.OPS) == sorted([*expected, "AutoContrast", "Equalize", "Invert"]) and len(ra.OPS) == 15
    for name, scale in expected.items():
        for level in ra.LEVELS:
            assert ra.value(name, level) == pytest.approx(float(scale[level]), abs=1e-12), (name, level)
    assert [ra.value("Cutout", m) for m in ra.LEVELS] == [2, 4, 7, 9, 11, 13, 16, 18, 20]
    assert [ra.value("Posterize", m) for m in ra.LEVELS] == [8, 7, 7, 6, 6, 5, 5, 4, 4]


@pytest.mark.parametrize("name", sorted(set(PIL_OPS) - {"ShearX", "ShearY", "Rotate"}))
def test_pixel_ops_equal_the_packages_pil_calls(name):
    for image in _images().values():
        for v in _signed_values(name):
            ours = ra.apply(image, name, v).int()
            theirs = _from_pil(PIL_OPS[name](_to_pil(image), v)).int()
            assert (ours - theirs).abs().max() <= TOLERANCE.get(name, 0), (name, v)


def test_rotation_is_pils_counter_clockwise_nearest_with_grey_fill():
    """Nearest-neighbour ties (a source coordinate exactly half-way) may round the other way."""
    image = _images()["noise"]
    for v in _signed_values("Rotate"):
        differ = (ra.apply(image, "Rotate", v) != _from_pil(_rotate_with_fill(_to_pil(image), v))).any(0)
        assert differ.float().mean() < 0.01, v
    corner = ra.apply(image, "Rotate", 30.0)[:, 0, 0]
    assert corner.tolist() == [128, 128, 128]  # the top-left corner comes from outside the image


@pytest.mark.parametrize("name", ["ShearX", "ShearY"])
def test_shear_has_pils_geometry(name):
    """On a linear ramp bilinear and bicubic interpolation agree, so where the source lies well
    inside the image the shear equals PIL's bicubic one up to rounding; wrong sign or centre fail."""
    ramp = _images()["ramp"]
    centres = torch.arange(S) + 0.5
    for v in _signed_values(name):
        ours = ra.apply(ramp, name, v).int()
        theirs = _from_pil(PIL_OPS[name](_to_pil(ramp), v)).int()
        # PIL's affine: output pixel centre (x, y) reads input (x + v y, y) (ShearX)
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        source = x + v * y if name == "ShearX" else y + v * x
        inside = (source > 2) & (source < S - 2)
        assert inside.sum() > S * S / 3
        assert (ours - theirs).abs()[:, inside].max() <= 2, v
        assert (ours[:, ~((source > -1) & (source < S + 1))] == 128).all()  # well outside: the grey fill


def test_invert_solarize_posterize_by_hand():
    image = _images()["noise"]
    assert torch.equal(ra.apply(image, "Invert", 0.0), 255 - image)
    for level in ra.LEVELS:
        threshold = 256 - 256 * level / 9
        expected = torch.where(image.float() >= threshold, 255 - image, image)
        assert torch.equal(ra.apply(image, "Solarize", ra.value("Solarize", level)), expected)
    for bits in (8, 7, 6, 5, 4):
        mask = (0xFF << (8 - bits)) & 0xFF  # keep the top `bits` bits
        assert torch.equal(ra.apply(image, "Posterize", bits), image & mask)
    full = torch.tensor([0, 255], dtype=torch.uint8).repeat(3, S * S // 2).reshape(3, S, S)
    assert torch.equal(ra.apply(full, "Solarize", ra.value("Solarize", 9)), 255 - full)  # level 9: all


@pytest.mark.parametrize("level", ra.LEVELS)
def test_cutout_is_the_packages_square(level):
    """Centre x then y drawn in [0, S); size // 2 each side, clipped; filled (125, 122, 113)."""
    image = torch.zeros(3, S, S, dtype=torch.uint8)
    size = ra.value("Cutout", level)
    for seed in range(20):
        torch.manual_seed(seed)
        cx, cy = int(torch.randint(0, S, ())), int(torch.randint(0, S, ()))
        torch.manual_seed(seed)
        out = ra.apply(image, "Cutout", size)
        half = size // 2
        expected = image.clone()
        expected[:, max(cy - half, 0) : cy + half, max(cx - half, 0) : cx + half] = torch.tensor(
            [125, 122, 113], dtype=torch.uint8
        )[:, None, None]
        assert torch.equal(out, expected) and image.sum() == 0


def test_draws_operations_levels_and_probability_uniformly(monkeypatch):
    """Over 20,000 seeded calls: each slot's operation uniform over the 15, level uniform over 1-9,
    applied with probability 0.5, signed operations negative half the time, rotations never.
    Bounds are about 5 standard deviations."""
    applied = []
    monkeypatch.setattr(ra, "apply", lambda x, name, v: applied.append((name, v)) or x)
    augment, image = ra.RandAugmentUDA(), torch.zeros(3, 4, 4, dtype=torch.uint8)
    torch.manual_seed(0)
    n = 20_000
    slots, per_call = [], Counter()
    for _ in range(n):
        before = len(applied)
        augment(image)
        per_call[len(applied) - before] += 1
    torch.manual_seed(0)
    for _ in range(n * 2):
        slots.append(augment.draw())
    assert abs(per_call[0] / n - 0.25) < 0.016 and abs(per_call[2] / n - 0.25) < 0.016
    assert abs(sum(on for *_, on in slots) / len(slots) - 0.5) < 0.0125
    ops, levels = Counter(name for name, _, _ in slots), Counter(level for _, level, _ in slots)
    assert set(ops) == set(ra.OPS) and set(levels) == set(range(1, 10))
    assert all(abs(c / len(slots) - 1 / 15) < 0.0065 for c in ops.values())
    assert all(abs(c / len(slots) - 1 / 9) < 0.008 for c in levels.values())
    values = {name: {round(ra.value(name, m), 9) for m in ra.LEVELS} for name in ra.OPS}
    assert all(round(abs(v), 9) in values[name] for name, v in applied)
    signed = [v for name, v in applied if name in ra.SIGNED]
    assert abs(sum(v < 0 for v in signed) / len(signed) - 0.5) < 0.025
    assert all(v > 0 for name, v in applied if name == "Rotate")


def test_seeded_calls_repeat_and_change_images():
    augment = ra.RandAugmentUDA()
    images = torch.randint(20, 236, (400, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(torch.stack([augment(x) for x in images]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].dtype == torch.uint8 and runs[0].shape == images.shape
    changed = (runs[0] != images).flatten(1).any(1).float().mean()
    assert 0.6 < changed < 0.8  # 3/4 of the calls apply an operation (sd 0.02); a few of those change nothing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_every_operation_on_cuda_equals_the_cpu():
    image = _images()["noise"]
    for name in ra.OPS:
        for v in _signed_values(name):
            torch.manual_seed(0)
            cpu = ra.apply(image, name, v)
            torch.manual_seed(0)
            gpu = ra.apply(image.cuda(), name, v).cpu()
            assert ((cpu.int() - gpu.int()).abs() > 1).float().mean() < 0.02, (name, v)  # float rounding, ties
    assert math.isfinite(float(ra.RandAugmentUDA()(image.cuda()).float().mean()))
