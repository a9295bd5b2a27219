"""DLFL specifics: positions, the cascade and deep supervision, option errors."""

import math

import pytest
import torch
from tests_helpers import make_model

from cml.config import load_config
from cml.core.errors import UserError
from cml.losses.bce.loss import masked_bce
from cml.models._build import build_model
from cml.models.dlfl.model import sine_positions

SMALL = {"embed_dim": 8, "heads": 2, "ffn_dim": 16}


def test_sine_positions_by_hand():
    # one row, two columns, width 4: one frequency (1); y channels (sin 0, cos 0), x channels (sin x, cos x)
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, math.sin(1), math.cos(1)]])
    torch.testing.assert_close(sine_positions(1, 2, 4, "cpu"), expected)


def test_positions_make_attention_see_where():
    """Without positions, cross-attention over positions would not change if the map were
    permuted; with them it does."""
    torch.manual_seed(0)
    model = make_model("dlfl", backbone="test_resnet", num_classes=3, **SMALL).eval()
    model.queries.weight.data.normal_()  # trained-size queries (they start near 0: even attention)
    fmap = torch.randn(2, model.backbone.num_features, 2, 2)
    permuted = fmap.flatten(2)[:, :, [3, 2, 1, 0]].reshape(fmap.shape)
    with torch.no_grad():
        assert (model.forward_head(fmap) - model.forward_head(permuted)).abs().max() > 1e-2


def test_cascade_and_deep_supervision():
    torch.manual_seed(0)
    model = make_model("dlfl", backbone="test_resnet", num_classes=3, blocks=3, **SMALL).eval()
    assert len(model.classifiers) == 3
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 1], [0, 1, -1]])
    with torch.no_grad():
        out = model(x, full=True)
        per_block = model.label_features(model.forward_features(x))
    assert len(out["block_logits"]) == 2 and torch.equal(out["label_features"], per_block[-1])
    # each block's queries are the previous block's label features
    with torch.no_grad():
        memory = model.input_norm(model.input_proj(model.forward_features(x).flatten(2).transpose(1, 2)))
        stream = model.queries.weight.expand(2, -1, -1)
        for block, features in zip(model.blocks, per_block):
            stream = block(stream, memory, sine_positions(2, 2, 8, "cpu"))
            torch.testing.assert_close(stream, features)
    with torch.no_grad():
        terms = model.loss_terms(out, y, masked_bce)
    assert set(terms) == {"block0", "block1"}
    with torch.no_grad():
        assert float(terms["block1"]) == pytest.approx(float(masked_bce(model.classifiers[1](per_block[1]), y)))
    last_only = make_model("dlfl", backbone="test_resnet", num_classes=3, blocks=3, deep_supervision=False, **SMALL)
    assert len(last_only.classifiers) == 1
    assert last_only.loss_terms(last_only(x, full=True), y, masked_bce) == {}


@pytest.mark.parametrize(
    "options,message",
    [
        ("{heads: 3}", "model.options.heads: 3 does not divide embed_dim 256"),
        ("{embed_dim: 18, heads: 2}", "model.options.embed_dim: expected a multiple of 4"),
        ("{dropout: 1.0}", r"model.options.dropout: expected a value in \[0, 1\), got 1.0"),
        ("{dropout: high}", "model.options.dropout: expected a number, got 'high'"),
        ("{blocks: 0}", "model.options.blocks: expected a value >= 1, got 0"),
        ("{deep_supervision: 1}", "model.options.deep_supervision: expected true or false, got 1"),
        ("{depth: 2}", "unknown key 'model.options.depth'; did you mean 'model.options.dropout'?"),
        ("{layers: 2}", "unknown key 'model.options.layers'; valid keys: embed_dim, blocks, heads"),
        (
            "{discriminative: {margin: 1}}",
            "unknown key 'model.options.discriminative.margin'; valid keys: weight, temperature",
        ),
    ],
)
def test_bad_options_are_one_clear_error_with_the_config(options, message):
    with pytest.raises(UserError, match=message):
        load_config(None, ["model.name=dlfl", "model.backbone=test_resnet", f"model.options={options}"])


def test_numbers_written_without_a_dot():
    cfg = load_config(None, ["model.name=dlfl", "model.backbone=test_resnet", "model.options={dropout: 1e-1}"])
    assert build_model(cfg).blocks[0].dropout == 0.1
