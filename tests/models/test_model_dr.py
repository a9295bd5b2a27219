"""DR specifics: class-specific features and the regulariser on by default."""

import torch
from tests_helpers import make_model

from cml.losses.bce.loss import masked_bce


def test_class_features_differ_even_on_a_one_position_map():
    torch.manual_seed(0)
    model = make_model("dr", backbone="test_resnet", num_classes=3, embed_dim=8).eval()
    with torch.no_grad():
        features = model.forward_label_features(torch.randn(2, 3, 32, 32))  # 32 px: a 1x1 map
    assert features.shape == (2, 3, 8) and not torch.allclose(features[:, 0], features[:, 1])


def test_pooling_is_each_class_attention_over_positions():
    torch.manual_seed(0)
    model = make_model("dr", backbone="test_resnet", num_classes=3, embed_dim=8).eval()
    fmap = torch.randn(1, model.backbone.num_features, 2, 2)
    with torch.no_grad():
        values = model.project(fmap.flatten(2).transpose(1, 2))[0]  # (4 positions, 8)
        c = 1
        weights = torch.softmax(values @ model.attention.weight[c] / 8**0.5, dim=0)
        expected = (weights[:, None] * values).sum(0) * torch.sigmoid(model.gates.weight[c])
        torch.testing.assert_close(model.label_features(fmap)[0, c], expected)


def test_regulariser_on_by_default_and_off_with_weight_zero():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.ones(4, 3)
    model = make_model("dr", backbone="test_resnet", num_classes=3, embed_dim=8)
    assert set(model.loss_terms(model(x, full=True), y, masked_bce)) == {"discriminative"}
    off = make_model("dr", backbone="test_resnet", num_classes=3, embed_dim=8, discriminative={"weight": 0})
    assert off.loss_terms(off(x, full=True), y, masked_bce) == {}
