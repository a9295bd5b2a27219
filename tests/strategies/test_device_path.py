"""The one-GPU options, checked on the CPU: torch.compile's fallback and the device-side flip."""

import io

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from tests_helpers import tiny

from cml.config import load_config
from cml.core.registry import DATASETS
from cml.evaluation.progress import ProgressLogger
from cml.models.linear.model import LinearModel
from cml.scenarios.augment import Augment, augment_batch, cutout
from cml.scenarios.builder import build_scenario
from cml.scenarios.images import MultiLabelImages
from cml.strategies._base import MultiLabelStrategy


def _losses(cfg, scenario) -> list[float]:
    torch.manual_seed(0)
    strategy = MultiLabelStrategy(
        model=LinearModel("test_resnet"),
        train_cfg=cfg.train,
        eval_batch_size=32,
        device="cpu",
        evaluator=EvaluationPlugin(loggers=[ProgressLogger(io.StringIO())]),
    )
    losses = []

    class Losses(SupervisedPlugin):
        def after_training_iteration(self, strategy, **kwargs):
            losses.append(float(strategy.loss.detach()))

    strategy.plugins.append(Losses())
    strategy.train(scenario.benchmark.train_stream[0], eval_streams=[])
    return losses


def test_compile_failure_falls_back_to_eager_with_one_warning(tmp_path, monkeypatch):
    overrides = tiny() + [f"data.root={tmp_path}", "train.hflip=false", "data.image_size=16"]
    cfg = load_config(None, overrides)
    scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))
    eager = _losses(cfg, scenario)

    def broken_compile(model):
        def call(*args, **kwargs):
            raise RuntimeError("inductor: no working C compiler\nmore details")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(
        UserWarning,
        match="train.compile: torch.compile failed .RuntimeError: inductor: no working "
        "C compiler.; training continues without compiling",
    ) as caught:
        compiled = _losses(load_config(None, overrides + ["train.compile=true"]), scenario)
    assert sum("train.compile" in str(w.message) for w in caught) == 1
    assert compiled == eager and len(eager) > 1


def test_device_flip_matches_the_loader_flip():
    """Both paths give uint8 images of the same shape, each the image or its mirror, half of the
    time mirrored."""
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    n = 4000
    flip_only = Augment(load_config(None, []).train, 8)
    loader = MultiLabelImages(
        ["x"] * n,
        torch.zeros(n, 2).numpy(),
        8,
        flip_only,
        pixels=image.permute(1, 2, 0).numpy()[None].repeat(1, 0),
        rows=[0] * n,
    )
    from_loader = torch.stack([loader[i][0] for i in range(n)])
    on_device = augment_batch(flip_only, image.expand(n, -1, -1, -1).clone())
    for batch in (from_loader, on_device):
        assert batch.shape == (n, 3, 8, 8) and batch.dtype == torch.uint8
        mirrored = (batch == image.flip(2)).flatten(1).all(1)
        assert (mirrored | (batch == image).flatten(1).all(1)).all()
        assert abs(mirrored.float().mean().item() - 0.5) < 0.03


def test_cutout_paints_one_clipped_rectangle_of_one_colour():
    torch.manual_seed(3)
    image = torch.zeros(3, 10, 10, dtype=torch.uint8)
    cy, cx = torch.randint(0, 10, (2,)).tolist()
    colour = torch.randint(0, 256, (3, 1, 1), dtype=torch.uint8)
    torch.manual_seed(3)
    out = cutout(image, 0.5)
    expected = image.clone()  # by hand: half of 5 = 2 pixels each side of the centre, clipped
    expected[:, max(cy - 2, 0) : cy + 2, max(cx - 2, 0) : cx + 2] = colour
    assert torch.equal(out, expected) and image.sum() == 0


@pytest.mark.parametrize(
    "options",
    [
        ["train.crop_scale=0.3"],
        ["train.cutout=0.5", "train.randaugment=true"],
        ["train.crop_scale=0.5", "train.cutout=0.5", "train.randaugment=true"],
    ],
)
def test_augmentations_in_the_loader_and_on_the_device(options):
    """uint8 images of the same size from both paths; seeded draws repeat; the images change."""
    augment = Augment(load_config(None, options).train, 16)
    batch = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        one_by_one = torch.stack([augment(image) for image in batch])
        torch.manual_seed(0)
        results.append((one_by_one, augment_batch(augment, batch)))
    for out in results[0]:
        assert out.shape == batch.shape and out.dtype == torch.uint8
        assert (out != batch).flatten(1).any(1).float().mean() > 0.5
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][0])


def _counting_compile(executed: list, compiles: list):
    """torch.compile with a backend that runs the captured graph as it is and counts its compiles
    and the forwards that ran through a compiled graph (not eagerly)."""
    real_compile = torch.compile

    def backend(graph, example_inputs):
        compiles.append(1)

        def run(*args):
            executed.append(1)
            return graph.forward(*args)

        return run

    return lambda model: real_compile(model, backend=backend)


@pytest.mark.parametrize("limit", [3, 1])
def test_compile_runs_every_step_compiled_or_says_why_not(limit, tmp_path, monkeypatch):
    """Three steps with grown heads and partial last batches, with torch's recompile limit lowered
    to `limit`: at 3 every training forward runs compiled (the cache starts afresh at each step;
    with one cache for the run the limit was reached in step 1 and torch went eager silently); at
    1 the partial batch needs a second compile and the fallback warns once."""
    from tests_helpers import run_cli

    executed, compiles = [], []
    monkeypatch.setattr(torch, "compile", _counting_compile(executed, compiles))
    iterations = []

    class Count(SupervisedPlugin):
        def after_training_iteration(self, strategy, **kwargs):
            iterations.append(1)

    from cml import experiment as run

    real_build = run.build_plugins
    monkeypatch.setattr(run, "build_plugins", lambda cfg, scenario: [Count(), *real_build(cfg, scenario)])
    overrides = tiny() + [f"data.root={tmp_path / 'data'}", "train.compile=true", "train.batch_size=8"]
    import warnings

    with warnings.catch_warnings(record=True) as caught, torch._dynamo.config.patch(recompile_limit=limit):
        warnings.simplefilter("always")
        assert run_cli("configs/demo.yaml", tmp_path / "run", overrides) == 0
    fallbacks = [w for w in caught if "train.compile" in str(w.message)]
    if limit == 3:
        assert len(executed) == len(iterations) > 6 and not fallbacks
        assert len(compiles) <= 2 * 3  # at most a static and a dynamic graph per step
    else:
        assert len(fallbacks) == 1 and "recompile" in str(fallbacks[0].message).lower()
        assert 0 < len(executed) < len(iterations)
