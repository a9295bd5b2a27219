"""POD distillation: the spatial and flat terms against a hand computation on small maps, the plugin
on real models through forward hooks, and the refusal of a backbone without the asked stages."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from tests_helpers import make_model, with_loss_door

from cml.config import load_config
from cml.core.errors import UserError
from cml.plugins.pod.plugin import PodDistillation, pod_flat, pod_spatial, stage_modules
from cml.strategies._base import frozen_copy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_spatial_term_by_hand():
    # one image, one channel, 2 x 2 maps
    new = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]]]])
    old = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # squares; sums over the width (per row) then over the height (per column), normalised:
    # new: rows (5, 1), columns (1, 5) -> (5, 1, 1, 5) / sqrt(52); old: (1, 1, 1, 1) / 2
    v_new = [5, 1, 1, 5]
    v_old = [1, 1, 1, 1]
    want = math.sqrt(sum((a / math.sqrt(52) - b / 2) ** 2 for a, b in zip(v_new, v_old)))
    assert pod_spatial([new], [old]).item() == pytest.approx(want, rel=1e-6)
    # two stages are averaged; identical maps give 0
    assert pod_spatial([new, old], [old, old]).item() == pytest.approx(want / 2, rel=1e-6)
    assert pod_spatial([new], [new]).item() == pytest.approx(0, abs=1e-7)


def test_spatial_term_averages_over_images_and_flat_term_by_hand():
    old = torch.ones(2, 1, 1, 2)
    new = torch.stack([torch.ones(1, 1, 2), torch.tensor([[[1.0, 0.0]]])])
    # image 0 identical; image 1: rows (1), columns (1, 0) -> (1, 1, 0)/sqrt(2) vs (2, 1, 1)/sqrt(6)
    d1 = math.sqrt(
        (1 / math.sqrt(2) - 2 / math.sqrt(6)) ** 2
        + (1 / math.sqrt(2) - 1 / math.sqrt(6)) ** 2
        + (1 / math.sqrt(6)) ** 2
    )
    assert pod_spatial([new], [old]).item() == pytest.approx(d1 / 2, rel=1e-6)
    a, b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert pod_flat(a, b).item() == pytest.approx((1 + 0) / 2, abs=1e-7)


@pytest.mark.parametrize("chosen", [[1, 2], [1, 2, 3, 4]])  # [1, 2, 3, 4]: KRT's POD baseline (its configs)
def test_plugin_distils_the_stages_of_both_models(chosen):
    torch.manual_seed(0)
    model = make_model("linear", "test_resnet", num_classes=3)
    previous = frozen_copy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 64, 64)
    strategy = SimpleNamespace(
        core_model=model,
        previous_model=previous,
        loss=torch.tensor(0.0),
        experience=SimpleNamespace(step=1),
    )
    with_loss_door(strategy)
    strategy.previous_outputs = lambda: previous(x, full=True)
    scenario = SimpleNamespace(steps=[None, SimpleNamespace(n_seen=8, classes=[6, 7])])
    plugin = PodDistillation(0.5, 2.0, chosen, scenario)
    plugin.before_training_exp(strategy)
    plugin.before_forward(strategy)
    model(x, full=True)
    plugin.before_backward(strategy)
    b = model.backbone
    stages = lambda net: [net.layer1, net.layer2, net.layer3, net.layer4]

    def maps(net):
        out, h = [], net.conv1(x)
        h = net.maxpool(net.act1(net.bn1(h)))
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            h = layer(h)
            out.append(h)
        return [out[k - 1] for k in chosen] + [out[3]]

    with torch.no_grad():
        new, old = maps(b), maps(previous.backbone)
        want = 2 * (0.5 * pod_spatial(new[:-1], old[:-1]) + 2.0 * pod_flat(new[-1].mean((2, 3)), old[-1].mean((2, 3))))
    assert strategy.loss.item() == pytest.approx(want.item(), rel=1e-5) and want.item() > 0
    assert not plugin.handles and all(not m._forward_hooks for m in stages(b) + stages(previous.backbone))


def test_refusals():
    vit = make_model("linear", "test_vit", num_classes=2)
    with pytest.raises(UserError, match="strategy.pod.stages: the backbone VisionTransformer has no stage of stride 4"):
        stage_modules(vit.backbone, [1, 2, 3])
    with pytest.raises(UserError, match="strategy.pod.stages: expected a list of stages >= 1"):
        load_config(None, ["strategy.plugins=[pod]", "strategy.pod.stages=[0]"])


def test_krts_pod_distils_all_four_tresnet_stages():
    """The authors' TResNet returns the outputs of layer1-4 and their spatial POD averages over all
    four (reference sheet 4b): stages 1-4, strides 4-32, are TResNet-M's layer1-layer4 (the last
    one also gives the pooled embedding)."""
    stages = load_config(str(CONFIGS / "coco_b0_c10_pod.yaml"), []).strategy.pod.stages
    assert stages == [1, 2, 3, 4]
    tresnet = timm.create_model("tresnet_m", num_classes=0)
    modules = stage_modules(tresnet, stages)
    body = tresnet.body
    want = (body.layer1, body.layer2, body.layer3, body.layer4, body.layer4)
    assert [id(m) for m in modules] == [id(m) for m in want]
