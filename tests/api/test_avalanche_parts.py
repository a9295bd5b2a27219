"""Avalanche's parts with cml's: a cml model normalises uint8 images as cml's strategy does (so
Avalanche code that runs it on a dataset's images sees the strategy's inputs), and Avalanche's
MAS plugin inside a cml experiment trains (before, it crashed on uint8 images after step 0)."""

import math

import torch
from tests_helpers import tiny_model

import cml
from cml.models._base import normalized

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_uint8_input_is_normalised_by_the_model_exactly_as_by_the_strategy():
    torch.manual_seed(0)
    model = tiny_model("linear", num_classes=4).eval()
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean, std = cml.input_stats(model)
    by_hand = (pixels.float() / 255 - mean) / std
    with torch.no_grad():
        assert torch.equal(model(pixels), model(normalized(pixels, (mean, std))))
        assert torch.allclose(model(pixels), model(by_hand), atol=1e-6)


def test_avalanche_mas_in_a_cml_experiment(tmp_path):
    from avalanche.training.plugins import MASPlugin

    settings = [
        "data.image_size=32", "data.synthetic.num_classes=6", "data.synthetic.train_images=60",
        "data.synthetic.test_images=30", "data.synthetic.image_size=32", "scenario.base=3",
        "scenario.increment=3", "model.backbone=test_resnet", "train.epochs=1", "train.batch_size=16",
        f"data.root={tmp_path / 'data'}",
    ]  # fmt: skip
    runs = {}
    for name, plugins in (("mas", [MASPlugin(lambda_reg=10.0)]), ("plain", [])):
        experiment = cml.Experiment.from_config(
            ROOT / "configs" / "demo.yaml", settings, out=tmp_path / name, plugins=plugins, verbose=False
        )
        runs[name] = experiment.run()
        if plugins:
            assert plugins[0].importance  # computed on the step's uint8 dataset, through the model
    maps = [s["map"] for s in runs["mas"]["steps"]]
    assert len(maps) == 2 and all(math.isfinite(m) for m in maps)
    assert runs["mas"]["steps"][0]["n_train"] == runs["plain"]["steps"][0]["n_train"]
    # MAS's importance pass runs the model in train mode (BatchNorm statistics move), then penalises
    assert runs["mas"]["steps"][1]["per_class_ap"] != runs["plain"]["steps"][1]["per_class_ap"]
