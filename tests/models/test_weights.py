"""model.pretrained reads the ASL project's checkpoint layout (KRT's starting weights): weights
under `model` or `state_dict`, `body.` prefixes, inplace-ABN names, the classifier dropped."""

import re

import pytest
import timm
import torch
from tests_helpers import make_model

from cml.core.errors import UserError
from cml.models._parts import create_backbone


def asl_layout(timm_state: dict) -> dict:
    """timm's TResNet names and batch norms written back as the ASL project's TResNet stores them."""
    out = {}
    for key, value in timm_state.items():
        key = re.sub(r"conv(\d+)\.conv", r"conv\1.0", key)
        key = re.sub(r"conv(\d+)\.bn", r"conv\1.1", key)
        key = re.sub(r"downsample\.(\d+)\.conv", r"downsample.\1.0", key)
        key = re.sub(r"downsample\.(\d+)\.bn", r"downsample.\1.1", key)
        out[key] = value
    return out


@pytest.mark.parametrize("entry", ["model", "state_dict"])
def test_tresnet_from_an_asl_checkpoint(tmp_path, entry):
    torch.manual_seed(0)
    source = timm.create_model("tresnet_m", num_classes=0).half()  # half: a smaller file, same layout
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name.endswith("bn.weight"):
                p.uniform_(0.5, 1.5)  # inplace-ABN keeps |weight|; timm's filter takes abs() + 1e-5
    asl = asl_layout(source.state_dict())
    assert "body.conv1.0.weight" in asl and "body.layer1.0.conv1.1.weight" in asl
    asl.update({"head.fc.weight": torch.zeros(80, 2048), "head.fc.bias": torch.zeros(80)})
    torch.save({entry: asl, "epoch": 40}, tmp_path / "MS_COCO_TRresNet_M_224_81.8.pth")
    model = make_model(
        "linear", "tresnet_m", pretrained=str(tmp_path / "MS_COCO_TRresNet_M_224_81.8.pth"), num_classes=3
    )
    loaded = model.backbone.state_dict()
    for name, value in source.state_dict().items():
        want = value.float() + 1e-5 if name.endswith("bn.weight") else value.float()
        assert torch.allclose(loaded[name].float(), want, atol=1e-3), name
    assert model.head.weight.shape == (3, 2048)  # the checkpoint's 80-class classifier is not loaded


def test_body_prefix_and_dataparallel_prefix_are_stripped(tmp_path):
    source = timm.create_model("test_resnet", num_classes=0)
    state = {f"module.body.{k}": v for k, v in source.state_dict().items()}
    state["module.head.fc.weight"] = torch.zeros(5, 96)
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    loaded = create_backbone("test_resnet", str(tmp_path / "w.pth"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())


def test_a_checkpoint_of_another_model_is_one_line(tmp_path):
    torch.save({"model": timm.create_model("test_convnext", num_classes=0).state_dict()}, tmp_path / "w.pth")
    with pytest.raises(UserError, match=r"model.pretrained: .*w.pth: lacks the backbone weights conv1.0.weight"):
        create_backbone("test_resnet", str(tmp_path / "w.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be read as a checkpoint"):
        create_backbone("test_resnet", str(tmp_path / "bad.pth"))
