"""MULTI-LANE: what trains at each step (counted by hand), old lanes and the ViT bit-identical after
a step of training, old classes' logits unchanged by a new lane; and real runs (exact resume,
the protocol configs for one step on fixtures)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from protocols.test_protocols import coco_root, voc_root  # noqa: F401
from tests_helpers import interrupt_after_step, run_cli, run_full_and_resumed, tiny

from cml.commands.cli import main
from cml.config import load_config
from cml.losses.bce.loss import masked_bce
from cml.models.multilane.model import MultiLane
from cml.strategies._optim import build_optimizer

REPO = Path(__file__).resolve().parents[2]
DIM, SELECTORS, PROMPTS, LAYERS = 192, 3, 2, 2  # vit_tiny: embed 192


def step(n_outputs: int, classes: list[int]):
    return SimpleNamespace(n_outputs=n_outputs, classes_in_this_experience=classes)


def small_model() -> MultiLane:
    torch.manual_seed(0)
    return MultiLane(
        "vit_tiny_patch16_224",
        image_size=16,
        patch_size=4,
        depth=3,
        selectors=SELECTORS,
        prompts=PROMPTS,
        prompt_layers=LAYERS,
    )


def trained(model, n_classes, iterations=3):
    cfg = load_config(None, ["train.weight_decay=0.1", "train.lr=0.05"]).train
    optimizer = build_optimizer(model, cfg, step=1)
    for _ in range(iterations):
        x, y = torch.randn(4, 3, 16, 16), (torch.rand(4, n_classes) < 0.5).float()
        optimizer.zero_grad()
        masked_bce(model(x), y).backward()
        optimizer.step()
    return optimizer


def test_what_trains_per_step_is_one_lane():
    model = small_model().train()
    for n_new, seen in ((3, 3), (2, 5)):
        model.lanes.adaptation(step(seen, list(range(seen - n_new, seen))))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        # selectors S x D, K and V prompts 2 x P x D in each of L blocks, head D x n + n
        assert trainable == SELECTORS * DIM + LAYERS * 2 * PROMPTS * DIM + DIM * n_new + n_new
        optimizer = build_optimizer(model, load_config(None).train)
        assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
            id(p) for p in model.lanes.lanes[-1].parameters()
        }


def test_old_lanes_and_vit_stay_bit_identical_and_old_logits_unchanged():
    model = small_model().train()
    model.lanes.adaptation(step(3, [0, 1, 2]))
    trained(model, 3)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        before = model.eval()(x)
    model.train().lanes.adaptation(step(5, [3, 4]))
    new_lane = {k: v.clone() for k, v in model.lanes.lanes[1].state_dict().items()}
    assert torch.equal(new_lane["selectors"], frozen["lanes.lanes.0.selectors"])  # starts from the last lane
    trained(model, 5)
    after_state = model.state_dict()
    assert all(torch.equal(after_state[k], v) for k, v in frozen.items())
    assert not torch.equal(model.lanes.lanes[1].selectors, new_lane["selectors"])  # the new lane did train
    with torch.no_grad():
        after = model.eval()(x)
    assert after.shape == (5, 5) and torch.equal(after[:, :3], before)


def test_a_non_vit_backbone_is_refused(capsys):
    assert (
        main(
            [
                "run",
                str(REPO / "configs" / "demo_multilane.yaml"),
                "--out",
                "/tmp/never",
                "--set",
                "model.backbone=resnet10t",
                "--set",
                "model.options={}",
            ]
        )
        == 2
    )
    assert "multilane needs a timm VisionTransformer" in capsys.readouterr().err


TINY_ML = tiny() + [
    "model.name=multilane",
    "model.backbone=vit_tiny_patch16_224",
    "model.options={patch_size: 8, depth: 2, selectors: 2, prompts: 2, prompt_layers: 1}",
]


def test_multilane_resumes_exactly(tmp_path, monkeypatch):
    overrides = TINY_ML + [f"data.root={tmp_path / 'data'}"]
    demo = REPO / "configs" / "demo.yaml"
    full, resumed = run_full_and_resumed(demo, tmp_path, monkeypatch, overrides)
    assert full == resumed and len(full["steps"]) == 3


@pytest.mark.parametrize(
    "config",
    [
        "coco_b0_c10_multilane.yaml",
        "coco_b40_c10_multilane.yaml",
        "voc_b0_c4_multilane.yaml",
        "voc_b10_c2_multilane.yaml",
    ],
)
def test_protocol_configs_run_a_step(tmp_path, monkeypatch, coco_root, voc_root, config):  # noqa: F811
    root = coco_root if config.startswith("coco") else voc_root
    overrides = [
        f"data.root={root}",
        "data.image_size=32",
        "data.num_workers=0",
        "model.backbone=vit_tiny_patch16_224",
        "model.pretrained=false",
        "model.options={patch_size: 8, depth: 2, selectors: 2, prompts: 2, prompt_layers: 1}",
        "train.epochs=1",
        "train.batch_size=32",
        "train.amp=none",
        "eval.batch_size=64",
    ]
    interrupt_after_step(monkeypatch, 0)
    assert run_cli(REPO / "configs" / config, tmp_path / "run", overrides) == 130
    steps = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["steps"]
    assert len(steps) == 1 and 0 < steps[0]["map"] <= 100
