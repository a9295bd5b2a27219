"""MULTI-LANE's recipe as the authors' code has it (tdemin16/multi-lane; issue 26), each value
computed here from their code's own formula or lines, on small tensors: the selectors' and prompts'
scale from `orthogonal_` over their (T, S, D) and (2, T, P, H, Dh) tensors, timm's head init, raw
[0, 1] pixels, the per-epoch cosine of engine.py, the lr x batch / 256 of main.py, the tagged
ViT weights, and crowd annotations as labels (their COCO loader)."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from coco_fixture import write_coco
from tests_helpers import tiny, tiny_model

from cml.config import load_config
from cml.core.errors import UserError
from cml.core.registry import DATASETS
from cml.models._base import input_stats, normalized
from cml.models._parts import create_backbone
from cml.models.multilane.model import Lane, Lanes, stream_length
from cml.strategies._optim import build_scheduler

REPO = Path(__file__).resolve().parents[2]
D, S, P, H = 48, 4, 3, 3  # embed dim, selectors, prompts, heads


def their_selectors(tasks: int) -> torch.Tensor:
    """Their VisionTransformer.init: orthogonal_ over (T, S, D); a task's row is its S x D block."""
    return torch.nn.init.orthogonal_(torch.randn(tasks, S, D))


def their_prompts(tasks: int) -> torch.Tensor:
    """Their PreT_Attention.init for one block: orthogonal_ over (2, T, P, H, D / H)."""
    return torch.nn.init.orthogonal_(torch.randn(2, tasks, P, H, D // H)).reshape(2, tasks, P, D)


def test_selectors_are_one_unit_vector_per_lane_as_theirs():
    torch.manual_seed(0)
    theirs = their_selectors(5)
    assert torch.allclose(theirs.pow(2).sum((1, 2)), torch.ones(5), atol=1e-5)  # each task's S x D block
    lane = Lane(D, S, P, 2, H, num_classes=2, steps=5)
    assert lane.selectors.shape == (S, D)
    assert lane.selectors.pow(2).sum().item() == pytest.approx(1.0, abs=1e-5)
    # a selector's squared norm about 1/S (not 1, as one orthogonal row per selector gave)
    assert lane.selectors.pow(2).sum(1).mean().item() == pytest.approx(1 / S, abs=1e-5)


@pytest.mark.parametrize("steps", [1, 6])
def test_prompts_have_their_scale_for_the_run_s_steps(steps):
    torch.manual_seed(0)
    layers = 30
    ours = Lane(D, S, P, layers, H, num_classes=2, steps=steps).prompts.detach()  # (L, 2, P, D)
    theirs = torch.stack([their_prompts(steps)[:, 0] for _ in range(layers)])  # task 0's part
    for prompts in (ours, theirs):
        block = prompts.pow(2).sum((2, 3))  # (L, 2): a block's keys, its values
        if steps == 1:  # the keys and values rows themselves: unit, orthogonal
            assert torch.allclose(block, torch.ones_like(block), atol=1e-5)
            dots = (prompts[:, 0] * prompts[:, 1]).sum((1, 2))
            assert dots.abs().max().item() < 1e-5
        else:  # task 0's P x D of a unit row of T x P x D: squared norm 1/T on average
            assert block.mean().item() == pytest.approx(1 / steps, rel=0.1)


def test_a_lane_reads_the_number_of_steps_from_its_stream():
    model = Lanes(D, H, S, P, prompt_layers=40).train()
    stream = [None] * 8  # Avalanche's experiences know their stream (`origin_stream`)
    torch.manual_seed(0)
    model.adaptation(SimpleNamespace(n_outputs=3, classes_in_this_experience=[0, 1, 2], origin_stream=stream))
    keys = model.lanes[0].prompts.detach()[:, 0].pow(2).sum((1, 2))
    assert keys.mean().item() == pytest.approx(1 / 8, rel=0.1)


def test_the_stream_length_of_a_real_scenario(tmp_path):
    from cml.scenarios.builder import build_scenario

    cfg = load_config(None, tiny() + [f"data.root={tmp_path}"])  # 6 classes, B2-C2: 3 steps
    scenario = build_scenario(cfg, DATASETS.get("synthetic").build(cfg.data))
    assert [stream_length(e) for e in scenario.benchmark.train_stream] == [3, 3, 3]


def test_head_is_timm_s_vit_head_init():
    torch.manual_seed(0)
    head = Lane(192, S, P, 1, H, num_classes=50).head
    assert torch.equal(head.bias, torch.zeros(50))
    w = head.weight.detach()
    assert w.abs().max().item() <= 2.0  # trunc_normal_'s bounds are -2, 2 (100 sigma)
    assert w.std().item() == pytest.approx(0.02, rel=0.05)  # nn.Linear's default: 1/sqrt(3 x 192) = 0.042
    assert abs(w.mean().item()) < 0.002


PIXELS = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 1, 3)


@pytest.mark.parametrize(
    "mode, mean, std",
    [
        ("none", (0, 0, 0), (1, 1, 1)),  # their build_transform: ToTensor only
        ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # their --normalize_input
        ("backbone", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # test_vit's pretrained_cfg, as cml's other models
    ],
)
def test_inputs_are_normalised_as_the_option_says(mode, mean, std):
    model = tiny_model("multilane", normalize_input=mode)
    by_hand = torch.stack([(PIXELS[0, c].float() / 255 - mean[c]) / std[c] for c in range(3)])
    assert torch.allclose(normalized(PIXELS, input_stats(model))[0], by_hand, atol=1e-6)


def test_default_is_raw_pixels():
    model = tiny_model("multilane")
    assert torch.equal(normalized(PIXELS, input_stats(model))[0], PIXELS[0].float() / 255)


def lr_sequence(scheduler_name: str, epochs: int, per_epoch: int, online: bool = False) -> list[float]:
    """The lr of every update, stepped as the strategy steps it (after each optimizer step)."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.015)
    cfg = SimpleNamespace(scheduler=scheduler_name, epochs=epochs, online=online)
    scheduler = build_scheduler(optimizer, cfg, per_epoch * (1 if online else epochs))
    lrs = []
    for _ in range(per_epoch * (1 if online else epochs)):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_epoch_is_their_per_epoch_cosine():
    epochs, per_epoch = 4, 3
    by_hand = [0.015, 0.015 * (1 + math.sqrt(0.5)) / 2, 0.0075, 0.015 * (1 - math.sqrt(0.5)) / 2]
    assert lr_sequence("cosine_epoch", epochs, per_epoch) == pytest.approx([v for v in by_hand for _ in range(3)])
    # their engine.py, literally: CosineAnnealingLR(T_max=epochs) stepped after each epoch
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.015)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    per_epoch_lrs = []
    for _ in range(epochs):
        per_epoch_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        theirs.step()
    assert per_epoch_lrs == pytest.approx(by_hand)
    # cml's `cosine` moves within the epoch
    assert lr_sequence("cosine", epochs, per_epoch)[1] < 0.015


def test_cosine_epoch_online_is_one_epoch_at_the_full_lr():
    assert lr_sequence("cosine_epoch", 5, 4, online=True) == [0.015] * 4


@pytest.mark.parametrize(
    "config, their_lr, batch",
    [("coco_b0_c10", 0.03, 128), ("coco_b40_c10", 0.03, 128), ("voc_b0_c4", 0.05, 256), ("voc_b10_c2", 0.05, 256)],
)
def test_protocol_configs_hold_their_recipe(config, their_lr, batch):
    cfg = load_config(REPO / "configs" / f"{config}_multilane.yaml")
    # main.py: args.lr = args.lr * batch_size * world_size / 256 (one GPU in their train_*.sh)
    assert cfg.train.lr == pytest.approx(their_lr * batch / 256) and cfg.train.batch_size == batch
    assert (cfg.train.scheduler, cfg.train.clip_grad_value, cfg.train.epochs) == ("cosine_epoch", None, 30)
    assert cfg.train.amp == "none"  # their engine.py has no autocast
    assert cfg.model.backbone == "vit_base_patch16_224.augreg_in21k_ft_in1k"
    assert cfg.model.options.normalize_input == "none"
    if config.startswith("coco"):
        assert cfg.data.coco.crowd == "positive"


def test_the_tag_names_their_weights():
    import timm

    # their timm 0.6.7 `vit_base_patch16_224` default_cfg (multi_lane/vision_transformer.py)
    theirs = (
        "https://storage.googleapis.com/vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-"
        "sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz"
    )
    assert timm.models.get_pretrained_cfg("vit_base_patch16_224.augreg_in21k_ft_in1k").url == theirs
    vit = create_backbone("vit_tiny_patch16_224.augreg_in21k_ft_in1k", False, img_size=32, patch_size=8, depth=1)
    assert vit.pretrained_cfg["tag"] == "augreg_in21k_ft_in1k"  # built without any download


def test_an_unknown_tag_is_one_line_naming_the_tags():
    with pytest.raises(UserError, match=r"model.backbone: timm has no weights 'augreg' for 'vit_tiny_patch16_224'"):
        create_backbone("vit_tiny_patch16_224.augreg")


def test_crowd_annotations_are_labels_as_their_loader(tmp_path):
    cats = [(3, "zebra"), (1, "person"), (7, "apple")]
    splits = {
        "train2014": {10: [(1, 0), (3, 1)], 25: [(7, 1)], 31: []},
        "val2014": {5: [(1, 0)], 6: [(3, 1), (7, 0)]},
    }
    root = write_coco(tmp_path / "coco", splits, cats)
    cfg = load_config(REPO / "configs" / "coco_b0_c10_multilane.yaml", [f"data.root={root}"])
    data = DATASETS.get("coco").build(cfg.data)
    for part, split in (("train2014", data.train), ("val2014", data.test)):
        doc = json.loads((root / "annotations" / f"instances_{part}.json").read_text())
        # their COCO loader: every annotation of an image is one of its targets, iscrowd unread
        targets = {im["id"]: set() for im in doc["images"]}
        for ann in doc["annotations"]:
            targets[ann["image_id"]].add(ann["category_id"])
        columns = sorted(c["id"] for c in doc["categories"])
        assert split.labels.tolist() == [[int(c in targets[i]) for c in columns] for i in split.ids]
