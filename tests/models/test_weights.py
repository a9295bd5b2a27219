"""model.pretrained reads the ASL project's checkpoint layout (KRT's starting weights): weights
under `model` or `state_dict`, `body.` prefixes, inplace-ABN names and key set (no
`num_batches_tracked`), the classifier dropped."""

import re
from pathlib import Path

import pytest
import timm
import torch
from tests_helpers import make_model

from cml.core.errors import UserError
from cml.models._parts import create_backbone

ROOT = Path(__file__).resolve().parents[2]


ANTI_ALIASED = ("body.layer2.0.conv1.", "body.layer3.0.conv2.", "body.layer4.0.conv2.")


def asl_layout(timm_state: dict) -> dict:
    """timm's TResNet state written back as the ASL project's TResNet stores it: inplace_abn's
    layers (`conv2d_ABN` = Sequential(conv, InPlaceABN)), so `convN.0` / `convN.1` names, the
    anti-aliased stride-2 blocks one Sequential deeper (`convN.0.0` / `convN.0.1`), and no
    `num_batches_tracked` (InPlaceABN keeps weight, bias, running_mean and running_var only)."""
    out = {}
    for key, value in timm_state.items():
        if key.endswith(".num_batches_tracked"):
            continue
        deeper = ".0" if key.startswith(ANTI_ALIASED) else ""
        key = re.sub(r"conv(\d+)\.conv\.", rf"conv\g<1>{deeper}.0.", key)
        key = re.sub(r"conv(\d+)\.bn\.", rf"conv\g<1>{deeper}.1.", key)
        key = re.sub(r"downsample\.(\d+)\.conv\.", r"downsample.\1.0.", key)
        key = re.sub(r"downsample\.(\d+)\.bn\.", r"downsample.\1.1.", key)
        out[key] = value
    return out


def asl_checkpoint(path, entry="model", dtype=torch.float32):
    """An ASL-layout file (random weights, inplace_abn's signed batch-norm weights) and its state."""
    torch.manual_seed(0)
    source = timm.create_model("tresnet_m", num_classes=0).to(dtype)
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name.endswith("bn.weight"):
                p.uniform_(-1.5, 1.5)  # inplace_abn uses |weight| + eps: the sign is free
        for name, b in source.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.uniform_(0.1, 2.0)
    asl = asl_layout(source.state_dict())
    asl.update({"head.fc.weight": torch.zeros(80, 2048, dtype=dtype), "head.fc.bias": torch.zeros(80, dtype=dtype)})
    torch.save({entry: asl, "epoch": 40}, path)
    return asl


def expected_timm_value(asl_key: str, value: torch.Tensor) -> torch.Tensor:
    """What timm's TResNet holds for an ASL weight: InPlaceABN's |weight| + 1e-5 for a batch norm's
    scale, the value itself for anything else."""
    is_abn_weight = re.search(r"conv\d+(\.0)?\.1\.weight$|downsample\.\d+\.1\.weight$", asl_key)
    return value.abs() + 1e-5 if is_abn_weight else value


def test_the_asl_key_set_is_inplace_abns():
    asl = asl_layout(timm.create_model("tresnet_m", num_classes=0).state_dict())
    assert "body.conv1.0.weight" in asl and "body.layer1.0.conv1.1.running_var" in asl
    assert "body.layer3.0.conv2.0.0.weight" in asl and "body.layer3.0.conv2.0.1.bias" in asl
    assert not any("num_batches_tracked" in k for k in asl)
    assert len(asl) == 432 - 60  # timm's 432 entries less its 60 batch-norm counters


@pytest.mark.parametrize("entry", ["model", "state_dict"])
def test_tresnet_from_an_asl_checkpoint(tmp_path, entry):
    path = tmp_path / "MS_COCO_TRresNet_M_224_81.8.pth"
    asl = asl_checkpoint(path, entry, dtype=torch.float16)  # half: a smaller file, same key set
    model = make_model("linear", "tresnet_m", pretrained=str(path), num_classes=3)
    loaded = asl_layout(model.backbone.state_dict())  # the loaded model's state under the file's names
    assert set(loaded) == set(asl) - {"head.fc.weight", "head.fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, expected_timm_value(key, asl[key]).float()), key
    counters = [v for k, v in model.backbone.state_dict().items() if k.endswith("num_batches_tracked")]
    assert len(counters) == 60 and all(int(v) == 0 for v in counters)  # filled: the module's own
    assert model.head.weight.shape == (3, 2048)  # the checkpoint's 80-class classifier is not loaded


def test_a_config_loads_the_asl_checkpoint(tmp_path):
    """`cml run configs/coco_b0_c10.yaml --set model.pretrained=FILE`: the model a run builds."""
    from cml.config.loading import load_config
    from cml.models._build import build_model

    path = tmp_path / "MS_COCO_TRresNet_M_224_81.8.pth"
    asl = asl_checkpoint(path)
    cfg = load_config(ROOT / "configs" / "coco_b0_c10.yaml", [f"model.pretrained={path}"])
    assert cfg.model.backbone == "tresnet_m"
    loaded = asl_layout(build_model(cfg).backbone.state_dict())
    assert set(loaded) == set(asl) - {"head.fc.weight", "head.fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, expected_timm_value(key, asl[key])), key


def test_a_file_missing_a_real_weight_is_still_refused(tmp_path):
    source = timm.create_model("test_resnet", num_classes=0)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": state}, tmp_path / "counters.pth")
    create_backbone("test_resnet", str(tmp_path / "counters.pth"))  # counters only: accepted
    del state["layer1.0.bn1.running_var"]
    torch.save({"model": state}, tmp_path / "w.pth")
    with pytest.raises(UserError, match=r"lacks the backbone weights layer1\.0\.bn1\.running_var;"):
        create_backbone("test_resnet", str(tmp_path / "w.pth"))


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
