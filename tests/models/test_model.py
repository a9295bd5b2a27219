import pytest
import timm
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from tests_helpers import make_model, tiny_model

from cml.config import load_config
from cml.core.errors import UserError
from cml.models._base import input_stats, normalized
from cml.models._parts import GrowingLinear, create_backbone


class FakeExperience:
    def __init__(self, classes):
        self.classes_in_this_experience = classes


def test_head_growth_keeps_old_outputs():
    torch.manual_seed(0)
    model = make_model("linear", backbone="test_resnet").eval()
    model.head.train()
    avalanche_model_adaptation(model, FakeExperience([0, 1, 2]))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    model.head.train()
    avalanche_model_adaptation(model, FakeExperience([3, 4]))
    with torch.no_grad():
        after = model(x)
    assert before.shape == (4, 3) and after.shape == (4, 5)
    assert torch.equal(after[:, :3], before)


def test_head_does_not_grow_in_eval_mode():
    head = GrowingLinear(8, 2).eval()
    head.adaptation(FakeExperience([0, 1, 2, 3]))
    assert head.num_classes == 2
    head.train()
    head.adaptation(FakeExperience([2, 3]))
    assert head.num_classes == 4
    # new rows start at the prior logit, old rows are untouched
    assert head.bias[2:].tolist() == pytest.approx([-2.944439] * 2, abs=1e-5)


def test_unknown_backbone_suggests_names():
    with pytest.raises(UserError, match="model.backbone: 'resnet5' is not a timm model"):
        create_backbone("resnet5")


def test_pretrained_from_file(tmp_path):
    source = timm.create_model("test_resnet", num_classes=0)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    loaded = create_backbone("test_resnet", str(tmp_path / "w.pth"))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_pretrained_unavailable_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # offline and an empty cache: the hub must not be asked (it would time out here, slowly)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="model.pretrained: could not load weights for 'test_resnet'"):
        create_backbone("test_resnet", True)


def test_model_options_are_checked_with_the_config():
    with pytest.raises(UserError, match="unknown key 'model.options.depth'; valid keys: head_init"):
        load_config(None, ["model.backbone=test_resnet", "model.options={depth: 3}"])


@pytest.mark.parametrize(
    "backbone, mean, std",
    [
        ("tresnet_m", (0, 0, 0), (1, 1, 1)),  # ASL's / KRT's TResNet takes pixels in [0, 1]
        ("resnet10t", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's
    ],
)
def test_images_are_normalised_as_the_backbone_was_trained(backbone, mean, std):
    model = make_model("linear", backbone=backbone, num_classes=2)
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    by_hand = torch.stack([(pixels[0, c].float() / 255 - mean[c]) / std[c] for c in range(3)])
    assert torch.allclose(normalized(pixels, input_stats(model))[0], by_hand, atol=1e-6)


def _ddp_cases():
    from cml.core.registry import MODELS

    for name in MODELS.names():  # every registered model: on its tiny backbone if it names one, else two
        named = MODELS.get(name).test_settings.get("backbone")
        for backbone in [named] if named else ["test_convnext", "test_resnet"]:
            yield name, backbone


@pytest.mark.parametrize("name,backbone", list(_ddp_cases()))
def test_every_trained_parameter_gets_a_gradient(name, backbone):
    """DistributedDataParallel (find_unused_parameters off) needs it: a model that reads the
    backbone's map must freeze what only timm's pooling head uses (ConvNeXt's final norm)."""
    from cml.losses.bce.loss import masked_bce

    torch.manual_seed(0)
    model = tiny_model(name, backbone=backbone)
    for classes in ([0, 1], [2, 3]):  # two steps: old parts frozen, new ones train
        model.train()
        avalanche_model_adaptation(model, FakeExperience(classes))
    out = model(torch.randn(4, 3, 32, 32), full=True)
    y = (torch.arange(16).reshape(4, 4) % 3 == 0).float()
    loss = masked_bce(out["logits"], y) + sum(model.loss_terms(out, y, masked_bce).values())
    loss.backward()
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained, "nothing trains"
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("name", [n for n, b in _ddp_cases() if b != "test_convnext"])
def test_logits_are_fp32_under_autocast(name):
    """Every model's classifier runs in fp32 inside an autocast region: bf16 logits (8 bits) tie
    test scores and move mAP. On the CPU's autocast, as on CUDA's."""
    torch.manual_seed(0)
    model = tiny_model(name)
    model.train()
    avalanche_model_adaptation(model, FakeExperience([0, 1, 2]))
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(4, 3, 32, 32))
    assert logits.dtype == torch.float32 and logits.shape == (4, 3) and torch.isfinite(logits).all()
    # ties: distinct fp32 logits stay distinct (bf16 has 256 values per octave)
    assert len(torch.unique(logits)) == logits.numel()
